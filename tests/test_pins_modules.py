"""Pins that the whole-module mutation run (issue 19) showed missing: the grid sampler's grid,
the split's helpers, TrainConfig's checks, space.py's loading helpers and train.History.

Each test names what it pins; expected values are worked out from the rule in the test. In
process, no training beyond a few real iris epochs: a few seconds.
"""

from __future__ import annotations

import math

import pytest

from tunectl.errors import SpaceError
from tunectl.space import parse_space
from tunectl.tune import grid


# ----------------------------------------------------------------------------- tune.grid: what --sampler grid walks


def test_the_grid_of_each_kind_of_parameter():
    space = parse_space({"epochs": 2, "params": {
        "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.25},
        "width": {"type": "int", "low": 16, "high": 64, "step": 16},
        "depth": {"type": "int", "low": 1, "high": 3},
    }})
    g = grid(space)
    assert list(g) == list(space.params)  # in the space's order
    assert g["activation"] == ["relu", "tanh"]
    assert g["dropout"] == [0.0, 0.25, 0.5]
    assert g["width"] == [16, 32, 48, 64] and all(type(v) is int for v in g["width"])
    assert g["depth"] == [1, 2, 3]
    # a step that does not divide the range: the grid ends at the last step inside it, where Optuna's
    # own distribution ends (it was rounded, so 3.5 steps made a fifth value above high)
    import warnings

    import optuna

    for kind, low, high, step in (("float", 0.0, 1.1, 0.2), ("int", 2, 16, 4), ("float", 0.0, 0.5, 0.2),
                                  ("float", 0.0, 0.3, 0.1)):
        values = grid(parse_space({"params": {"weight_decay" if kind == "float" else "width": {
            "type": kind, "low": low, "high": high, "step": step}}}))
        (values,) = values.values()
        cls = optuna.distributions.FloatDistribution if kind == "float" else optuna.distributions.IntDistribution
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the range is not divisible by step", when it is not
            optuna_high = cls(low, high, step=step).high
        assert values[-1] == pytest.approx(optuna_high) and len(values) == round((optuna_high - low) / step) + 1
        assert all(low <= v <= high + 1e-12 for v in values)

def test_an_int_range_without_a_step_is_a_grid_up_to_seventeen_values():
    assert grid(parse_space({"params": {"depth": {"type": "int", "low": 1, "high": 17}}}))["depth"] == \
        list(range(1, 18))
    with pytest.raises(SpaceError) as e:
        grid(parse_space({"params": {"depth": {"type": "int", "low": 1, "high": 18}}}, "s.yaml"))
    assert str(e.value) == "s.yaml: params.depth: --sampler grid needs choices or a step for each parameter"
    # a one_minus parameter is log-scaled, never stepped: no grid
    with pytest.raises(SpaceError, match="params.beta1: --sampler grid needs choices or a step"):
        grid(parse_space({"params": {"beta1": {"type": "float", "low": 0.8, "high": 0.99, "one_minus": True}}}, "s"))
    with pytest.raises(SpaceError, match="params.lr: --sampler grid needs choices or a step"):
        grid(parse_space({"params": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}}, "s.yaml"))


# ----------------------------------------------------------------------------- train.History and the devices a refusal lists


def test_a_history_as_history_json_holds_it(iris):
    from tunectl.config import TrainConfig
    from tunectl.train import fit

    hist = fit(TrainConfig(epochs=3, width=4, depth=1, seed=0, batch_size=0), iris, device="cpu")
    d = hist.to_dict()
    assert list(d) == ["status", "train_error", "dev_error", "dev_error_se", "train_error_se", "best_epoch", "epochs",
                       "batch_size_used", "train_sample", "train_curve", "seconds", "epoch_seconds", "history"]
    # the train error's sample: as many training examples as dev has (iris: 30), measured in eval mode
    assert (d["train_sample"], d["train_curve"]) == (min(len(iris.y_dev), len(iris.y_train), 10_000), "eval")
    from tunectl import noise

    n_dev = len(iris.y_dev)  # an error rate's standard error: the plus-four binomial on the dev split
    assert d["dev_error_se"] == pytest.approx(noise.binomial_se(hist.dev_error, n_dev))
    # ... and the train error's on its sample, which is as large as dev
    assert d["train_error_se"] == pytest.approx(noise.binomial_se(hist.train_error, d["train_sample"]))
    assert d["seconds"] == hist.seconds > 0 and d["epochs"] == 3 == len(d["history"])
    assert d["epoch_seconds"] == pytest.approx(hist.seconds / 3)
    assert (d["train_error"], d["dev_error"], d["best_epoch"]) == (hist.train_error, hist.dev_error, hist.best_epoch)
    # a run that stopped before its first epoch: no division by zero, and NaN errors become null
    from tunectl.train import History

    empty = History(TrainConfig(), seconds=0.5).to_dict()
    assert empty["epoch_seconds"] == 0.5 and empty["epochs"] == 0 and empty["train_error"] is None


def test_a_historys_checkpoint_rebuilds_its_model(iris):
    from tunectl.config import TrainConfig
    from tunectl.models import build_model
    from tunectl.train import History, fit

    hist = fit(TrainConfig(epochs=1, width=4, depth=1, seed=0), iris, device="cpu")
    ck = hist.checkpoint({"trial": 3})
    assert (ck["out_dim"], ck["task"], ck["input_shape"]) == (3, "multiclass", [4])
    assert (ck["best_epoch"], ck["dev_error"], ck["trial"]) == (hist.best_epoch, hist.dev_error, 3)
    model = build_model(TrainConfig(**ck["config"]), tuple(ck["input_shape"]), ck["out_dim"])
    model.load_state_dict(ck["state_dict"])  # the shapes are those of the trained model
    with pytest.raises(ValueError) as e:
        History(TrainConfig()).checkpoint()
    assert str(e.value) == "this run kept no model (it diverged in its first epoch)"


def test_a_refused_device_lists_mps_where_present(monkeypatch):
    import torch

    from tunectl.errors import ConfigError
    from tunectl.train import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TUNECTL_DEVICE", raising=False)
    for mps, have in ((True, "cpu, mps"), (False, "cpu")):
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        with pytest.raises(ConfigError) as e:
            check_device("cuda")
        assert f"(this machine has: {have}); use --device cpu" in str(e.value)


# ----------------------------------------------------------------------------- data.py: the split's manifest and same_split


def test_the_manifest_keeps_the_classes_record_and_a_share_below_one_only():
    from tunectl.data import DataSettings, make_splits, read_dataset

    ds, classes = read_dataset(DataSettings(dataset="iris", classes="0,2"))
    assert classes == {"selection": "0,2", "names": [ds.classes[0], ds.classes[1]], "indices": [0, 2]}
    m = make_splits(ds, classes=classes).manifest
    assert m["classes"] == classes
    plain = make_splits(ds).manifest
    assert "classes" not in plain
    # the whole training split is no "share": nothing recorded, and the same rows as without the argument
    whole = make_splits(ds, train_fraction=1.0)
    assert "train_fraction" not in whole.manifest and "train_used" not in whole.manifest
    assert whole.manifest == plain
    half = make_splits(ds, train_fraction=0.5).manifest
    assert (half["train_fraction"], half["train_used"]) == (0.5, round(0.5 * plain["sizes"]["train"]))


@pytest.mark.parametrize("key", ["data_hash", "hashes", "sizes", "seed"])
def test_same_split_compares_data_rows_sizes_and_seed(key):
    from tunectl.data import DataSettings, load_splits, same_split

    a = load_splits(DataSettings(dataset="iris")).manifest
    assert same_split(a, dict(a)) and same_split(a, {**a, "spec": {"name": "elsewhere"}, "stratified": False})
    changed = {**a, key: {"train": "other"} if isinstance(a[key], dict) else f"{a[key]}-other"}
    assert not same_split(a, changed) and not same_split(changed, a)
    assert not same_split(a, {k: v for k, v in a.items() if k != key})


def test_the_largest_split_seed_splits_stratified():
    from tunectl.config import MAX_SEED
    from tunectl.data import DataSettings, load_splits

    m = load_splits(DataSettings(dataset="iris", split_seed=MAX_SEED)).manifest
    assert m["seed"] == MAX_SEED and m["stratified"] is True  # the dev split's seed wraps to 0, inside 32 bits


def test_a_split_with_an_empty_part_is_too_few_examples():
    from tunectl.data import make_splits
    from tunectl.errors import DataError
    from tunectl.sources import Dataset

    import torch

    ds = Dataset(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), "binary", "four", ["a", "b"], False, False)
    for ratios in ((0.7, 0.2, 0.1), (0.7, 0.1, 0.2)):  # 4 examples: one part rounds to none
        with pytest.raises(DataError) as e:
            make_splits(ds, ratios)
        assert str(e.value) == "four: 4 examples are too few to split into train/dev/test; add data"


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "7"])
def test_a_bad_split_seed_is_shown_in_the_refusal(seed):
    from tunectl.data import check_split_seed
    from tunectl.errors import DataError

    with pytest.raises(DataError) as e:
        check_split_seed(seed)
    assert str(e.value).startswith(f"--split-seed {seed!r}: must be a whole number between 0 and {2**32 - 1}")


# ----------------------------------------------------------------------------- config.py: bounded reprs and the YAML alias bomb guard


def test_short_bounds_every_kind_of_value():
    from tunectl.config import short

    assert short([[[[1]]]]) == "[[[[...]]]]"  # three levels deep
    assert short(list(range(10))) == "[0, 1, 2, 3, 4, 5, ...]"  # six items of a list, tuple or set
    assert short(tuple(range(10))) == "(0, 1, 2, 3, 4, 5, ...)"
    assert short({i: i for i in range(10)}) == "{0: 0, 1: 1, 2: 2, 3: 3, ...}"  # four of a mapping
    big = short(10**50)  # a pasted 51-digit number: 40 characters
    assert len(big) == 40 and big.startswith("1000") and "..." in big
    assert short(10**39) == str(10**39)
    cut = short(["x" * 30] * 6, 40)  # a repr longer than the limit is cut to it, marked
    assert len(cut) == 40 and cut.endswith("...") and cut.startswith("['xxx")
    assert short("y" * 10, 40) == repr("y" * 10)


def test_check_size_counts_every_value_once_expanded():
    from tunectl.config import ConfigError, check_size

    # a scalar is one value, a list or mapping one plus its items (a mapping's keys too)
    check_size(list(range(9)), "f.yaml", limit=10)  # 1 + 9
    with pytest.raises(ConfigError) as e:
        check_size(list(range(10)), "f.yaml", limit=10)  # 1 + 10
    assert str(e.value) == ("f.yaml: holds more than 10 values once its YAML aliases (*name) are expanded; "
                            "write a smaller file without alias chains")
    check_size({"a": 1, "b": 2}, "f.yaml", limit=5)  # 1 + 2 keys + 2 values
    with pytest.raises(ConfigError):
        check_size({"a": 1, "b": [2]}, "f.yaml", limit=5)
    # an alias (the same list twice) counts twice, as it expands, and is visited once
    shared = list(range(5))  # 6 values
    check_size([shared, shared], "f.yaml", limit=13)  # 1 + 6 + 6
    with pytest.raises(ConfigError):
        check_size([shared, shared], "f.yaml", limit=12)
    bomb = ["lol"] * 10
    for _ in range(8):
        bomb = [bomb] * 10  # 10**9 values once expanded, refused without expanding them
    with pytest.raises(ConfigError, match="holds more than 100000 values"):
        check_size(bomb, "bomb.yaml")


def _refusal(**changes):
    from tunectl.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError) as e:
        TrainConfig(**changes)
    return str(e.value)


@pytest.mark.parametrize("name, value, fix", [
    ("depth", -1, "must be >= 0 (0 = no hidden layer: logistic/linear regression)"),
    ("width", 0, "must be >= 1"),
    ("dropout", 1.0, "must be in [0, 1), e.g. 0.2"), ("dropout", -0.1, "must be in [0, 1), e.g. 0.2"),
    ("conv_layers", 0, "must be >= 1"),
    ("filters", 0, "must be >= 1"),
    ("kernel_size", 4, "must be odd (1, 3, 5, ...)"), ("kernel_size", 0, "must be odd (1, 3, 5, ...)"),
    ("body_lr_scale", -0.5, "must be >= 0"),
    ("lr", 0.0, "must be > 0, e.g. 1e-3"),
    ("beta", 1.0, "must be in [0, 1), e.g. 0.9"), ("beta1", 1.0, "must be in [0, 1), e.g. 0.9"),
    ("beta2", 1.0, "must be in [0, 1), e.g. 0.999"),
    ("eps", 0.0, "must be > 0, e.g. 1e-8"),
    ("weight_decay", -0.1, "must be >= 0"),
    ("batch_size", -1, "must be >= 0 (1 = stochastic, 0 = full batch)"),
    ("epochs", 0, "must be >= 1"),
    ("patience", -1, "must be >= 0 (0 = no early stopping)"),
    ("seed", -1, f"must be between 0 and {2**32 - 1}"), ("seed", 2**32, f"must be between 0 and {2**32 - 1}"),
    ("depth", 257, "must be <= 256"), ("width", 65_537, "must be <= 65536"),
    ("conv_layers", 17, "must be <= 16 (each block halves the image side)"), ("filters", 4097, "must be <= 4096"),
    ("kernel_size", 65, "must be <= 63"), ("batch_size", 2**31, f"must be <= {2**31 - 1}"),
    ("epochs", 1_000_001, "must be <= 1000000"), ("patience", 1_000_001, "must be <= 1000000"),
])
def test_each_range_check_names_the_field_the_value_and_the_fix(name, value, fix):
    assert _refusal(**{name: value}) == f"{name}={value!r}: {fix}"


@pytest.mark.parametrize("name, value, allowed", [
    ("model", "rnn-ish", "mlp, cnn, transfer, rnn"),
    ("activation", "gelu", "relu, leaky_relu, tanh, sigmoid"),
    ("optimizer", "adamw", "sgd, momentum, rmsprop, adam"),
    ("augment", "heavy", "none, light, strong"),
    ("arch", "vgg", "tunectl, resnet18, mobilenet_v3_small"),
])
def test_each_choice_names_the_field_and_its_choices(name, value, allowed):
    assert _refusal(**{name: value}) == f"{name}: {value!r} is not one of {allowed}"


def test_the_edges_of_each_range_are_accepted_and_floats_must_be_finite():
    from tunectl.config import TrainConfig

    TrainConfig(depth=0, width=1, dropout=0.0, kernel_size=1, body_lr_scale=0.0, beta=0.0, weight_decay=0.0,
                batch_size=0, patience=0, seed=0)
    TrainConfig(depth=256, width=65_536, conv_layers=16, filters=4096, kernel_size=63, seed=2**32 - 1,
                epochs=1_000_000, freeze="all_but_last_2")
    for name in ("lr", "dropout", "weight_decay", "eps"):
        assert _refusal(**{name: math.inf}) == f"{name}: must be a finite number, got inf"
    assert _refusal(freeze="all_but_last_x") == ("freeze: 'all_but_last_x' is not none, body or all_but_last_N "
                                                 "(e.g. all_but_last_1)")


# ----------------------------------------------------------------------------- space.py: which --space is a shipped name, which a path


@pytest.mark.parametrize("text, bare", [
    ("quick", True), ("my-space", True), ("spaces/quick", False), ("quick.yaml", False), ("QUICK.YML", False),
    ("quick.yml", False), ("", False), ("./quick", False),
])
def test_a_bare_name_has_no_folder_and_no_yaml_suffix(text, bare):
    from tunectl.space import is_bare_name

    assert is_bare_name(text) is bare


def test_find_space_takes_shipped_names_and_paths(tmp_path, monkeypatch):
    from pathlib import Path

    from tunectl.space import find_space, shipped_dir, shipped_names

    monkeypatch.chdir(tmp_path)
    assert find_space("quick") == shipped_dir() / "quick.yaml"
    assert find_space(Path("quick")) == Path("quick")  # a Path object is always the path it names
    assert find_space("here/quick.yaml") == Path("here/quick.yaml")
    (tmp_path / "mine").mkdir()  # a bare name that is not shipped but exists here is a path
    assert find_space("mine") == Path("mine")
    with pytest.raises(SpaceError) as e:
        find_space("nope")
    assert str(e.value) == (f"--space nope: no such shipped search space; use one of: {', '.join(shipped_names())}, "
                            f"or give the path of a YAML file (see `tunectl spaces`)")


def test_an_unknown_parameter_of_a_builder_space_says_where(tmp_path):
    builder = tmp_path / "net.py"
    builder.write_text("from torch import nn\n\n\ndef build(input_shape, out_dim, hidden=8):\n"
                       "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(out_dim))\n")
    with pytest.raises(SpaceError) as e:
        parse_space({"model": f"{builder}:build", "fixed": {"hiden": 3},
                     "params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1}}}, "s.yaml")
    assert "params/fixed 'hiden': neither a tunectl hyperparameter nor a parameter of" in str(e.value)


def test_a_yaml_syntax_error_names_its_line_column_and_problem():
    import yaml

    from tunectl.space import load_yaml

    text = "epochs: 3\nparams:\n  lr: {type: float, low: 1e-4\n  width: 3\n"
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as e:  # what PyYAML itself says, 0-based
        line, column, problem = e.problem_mark.line + 1, e.problem_mark.column + 1, e.problem
    with pytest.raises(SpaceError) as err:
        load_yaml(text, "s.yaml")
    assert str(err.value) == f"s.yaml: line {line}, column {column}: YAML {problem}; fix the syntax there"
    assert problem and problem != "syntax error"


def test_a_long_bad_value_in_a_space_is_cut_to_sixty_characters():
    with pytest.raises(SpaceError) as e:
        parse_space({"params": {"width": {"type": "z" * 200, "low": 2, "high": 8}}}, "s.yaml")
    shown = str(e.value).removeprefix("s.yaml: params.width.type: ").split(" is not float, int or categorical")[0]
    assert len(shown) == 60 and shown.startswith("'zzz") and "..." in shown


def test_a_space_file_of_the_largest_size_is_read_and_one_byte_more_is_refused(tmp_path):
    from tunectl.space import MAX_BYTES, load_space

    body = "epochs: 2\nparams:\n  lr: {type: float, low: 0.001, high: 0.1}\n"
    exact = tmp_path / "exact.yaml"
    exact.write_text(body + "#" * (MAX_BYTES - len(body) - 1) + "\n")
    assert exact.stat().st_size == MAX_BYTES and load_space(exact).params["lr"]["high"] == 0.1
    over = tmp_path / "over.yaml"
    over.write_text(body + "#" * (MAX_BYTES - len(body)) + "\n")
    with pytest.raises(SpaceError) as e:
        load_space(over)
    assert str(e.value) == (f"{over}: too large for a search-space file (more than {MAX_BYTES} bytes); "
                            f"is it the right file?")


def test_a_spaces_fingerprint_ignores_order_data_set_and_where_the_builder_lives(tmp_path):
    import json

    lr = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}
    a = parse_space({"dataset": "iris", "epochs": 3, "params": lr, "fixed": {"width": 32, "dropout": 0.1}})
    b = parse_space({"dataset": "wine", "fixed": {"dropout": 0.1, "width": 32}, "params": lr, "epochs": 3})
    assert list(a.fixed) != list(b.fixed) and a.fingerprint() == b.fingerprint()  # order and data set aside
    assert a.fingerprint() != parse_space({"epochs": 4, "params": lr, "fixed": a.fixed}).fingerprint()
    code = "from torch import nn\n\n\ndef build(input_shape, out_dim, hidden=8):\n    return nn.LazyLinear(out_dim)\n"
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        (folder / "net.py").write_text(code)
    s1 = parse_space({"model": f"{one / 'net.py'}:build", "params": lr})
    s2 = parse_space({"model": f"{two / 'net.py'}:build", "params": lr})
    assert s1.fingerprint() == s2.fingerprint()  # the same file content, elsewhere: the same search
    assert json.loads(s1.fingerprint())["model"] == "build" and "dataset" not in json.loads(a.fingerprint())


def test_dump_space_keeps_the_spaces_own_order():
    import yaml

    from tunectl.space import dump_space

    space = parse_space({"epochs": 4, "params": {"width": {"type": "int", "low": 8, "high": 64},
                                                 "lr": {"type": "float", "low": 1e-4, "high": 1e-1}}})
    text = dump_space(space, ["a comment"])
    assert text.startswith("# a comment\n")
    doc = yaml.safe_load(text)
    assert list(doc) == list(space.to_dict()) == ["epochs", "params", "fixed"]
    assert list(doc["params"]) == ["width", "lr"] and parse_space(doc).fingerprint() == space.fingerprint()


def test_describe_shipped_lists_every_shipped_space_as_it_loads():
    from tunectl.space import describe_shipped, load_space, shipped_dir

    rows = describe_shipped()
    files = sorted(shipped_dir().glob("*.yaml"))
    assert [r["name"] for r in rows] == [f.stem for f in files] and rows
    for row, path in zip(rows, files):
        sp = load_space(path)
        first = next(ln for ln in path.read_text().splitlines() if ln.startswith("#"))
        assert row == {"name": path.stem, "about": first.lstrip("#").strip().rstrip(":"), "model": sp.model,
                       "dataset": sp.dataset, "epochs": sp.epochs, "params": list(sp.params), "path": str(path)}


def test_a_space_file_not_in_utf8_names_the_byte_and_its_offset(tmp_path):
    from tunectl.space import load_space

    path = tmp_path / "latin1.yaml"
    path.write_bytes("epochs: 2\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert str(e.value) == (f"{path}: cannot read the search-space file (not UTF-8: byte 0xe9 at offset 15); "
                            f"save it as UTF-8")


def test_a_relative_builder_in_a_space_file_is_found_beside_the_file(tmp_path, monkeypatch):
    from tunectl.space import load_space

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "net.py").write_text("from torch import nn\n\n\ndef build(input_shape, out_dim, hidden=8):\n"
                                   "    return nn.LazyLinear(out_dim)\n")
    (folder / "space.yaml").write_text("model: net.py:build\nparams:\n  lr: {type: float, low: 0.001, high: 0.1}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    space = load_space(folder / "space.yaml")
    assert space.model.rpartition(":")[0] == str((folder / "net.py").resolve()) and len(space.model_sha256) == 64


def test_a_yaml_error_without_a_position_is_still_one_clean_line():
    from tunectl.space import load_yaml

    with pytest.raises(SpaceError) as e:
        load_yaml("epochs: \x00\n", "s.yaml")  # PyYAML's ReaderError: no line, no problem text
    assert str(e.value) == "s.yaml: YAML syntax error; fix the syntax there"


def test_a_long_name_in_a_space_is_cut_to_sixty_characters():
    with pytest.raises(SpaceError) as e:
        parse_space({"params": {"x" * 200: {"type": "int", "low": 1, "high": 3}}}, "s.yaml")
    shown = str(e.value).removeprefix("s.yaml: params.").split(": unknown hyperparameter")[0]
    assert len(shown) == 60 and shown.endswith("...")


def test_a_builder_space_round_trips_through_its_record(tmp_path):
    from tunectl.errors import TunectlError

    path = tmp_path / "net.py"
    path.write_text("from torch import nn\n\n\ndef build(input_shape, out_dim, hidden=8):\n    return nn.LazyLinear(out_dim)\n")
    space = parse_space({"model": f"{path}:build", "params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1}}})
    record = space.to_dict()  # what a study stores and a worker parses again
    assert record["model_sha256"] == space.model_sha256
    assert parse_space(record).fingerprint() == space.fingerprint()
    path.write_text(path.read_text() + "# changed\n")
    with pytest.raises(TunectlError, match="sha256|SHA-256|changed"):
        parse_space(record)
