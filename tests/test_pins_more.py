"""Issue 19, part 2: pins for space.py and train.py that the mutation run showed unpinned.

Each test names what it pins. Everything is real: spaces parsed from documents, a real Optuna
trial, a real builder file, tiny real trainings (one or two epochs of digits/iris/diabetes).
The device tests make torch report GPUs/MPS that this machine may lack (monkeypatching only the
availability queries): check_device never builds a CUDA context, so nothing else is touched.
"""

from __future__ import annotations

import dataclasses
import math
import time

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tunectl.config import TrainConfig
from tunectl.errors import ConfigError, SpaceError
from tunectl.space import parse_space, suggest, trial_config
from tunectl.train import _wrong, check, check_device, evaluate, fit, make_optimizer
from tunectl.models import build_model

CPU = "cpu"

BUILDER = """\
import math
from torch import nn


def build(input_shape, out_dim, hidden=8, act="relu"):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
"""
WRONG_SHAPE = """\
import math
from torch import nn


def build(input_shape, out_dim):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), out_dim + 2))
"""


def space_error(doc, origin="s.yaml") -> str:
    with pytest.raises(SpaceError) as e:
        parse_space(doc, origin)
    return str(e.value)


def p(**params):
    return {"params": params}


# ----------------------------------------------------------------------------- space: distributions


def test_each_range_becomes_the_exact_optuna_distribution():
    space = parse_space(p(width={"type": "int", "low": 16, "high": 256, "log": True},
                          depth={"type": "int", "low": 1, "high": 9, "step": 2},
                          filters={"type": "int", "low": 8, "high": 64},
                          lr={"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                          dropout={"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
                          weight_decay={"type": "float", "low": 0.0, "high": 0.01},
                          beta2={"type": "float", "low": 0.9, "high": 0.999, "one_minus": True},
                          optimizer={"type": "categorical", "choices": ["sgd", "adam"]}))
    d = space.distributions()
    assert d == {
        "width": IntDistribution(16, 256, log=True, step=1),
        "depth": IntDistribution(1, 9, log=False, step=2),
        "filters": IntDistribution(8, 64, log=False, step=1),
        "lr": FloatDistribution(1e-4, 1e-1, log=True, step=None),
        "dropout": FloatDistribution(0.0, 0.5, log=False, step=0.1),
        "weight_decay": FloatDistribution(0.0, 0.01, log=False, step=None),
        "one_minus_beta2": FloatDistribution(1 - 0.999, 1 - 0.9, log=True),
        "optimizer": CategoricalDistribution(["sgd", "adam"]),
    }
    # False, not a falsy stand-in: Optuna compares distributions field by field across trials
    assert all(v.log is False for k, v in d.items() if k in ("depth", "filters", "dropout", "weight_decay"))


def test_a_real_trial_records_the_spaces_distributions_and_values_on_its_grid():
    space = parse_space(p(width={"type": "int", "low": 16, "high": 256, "log": True},
                          depth={"type": "int", "low": 1, "high": 9, "step": 2},
                          lr={"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                          dropout={"type": "float", "low": 0.0, "high": 0.5, "step": 0.1}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        chosen = suggest(trial, space)
        assert trial.distributions == space.distributions()
        assert chosen["depth"] in (1, 3, 5, 7, 9)
        assert round(chosen["dropout"] * 10, 9) == round(chosen["dropout"] * 10)
        study.tell(trial, 0.0)


def test_an_inactive_condition_does_not_hide_the_parameters_after_it():
    space = parse_space(p(optimizer={"type": "categorical", "choices": ["momentum", "adam"]},
                          beta={"type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "momentum"}},
                          beta1={"type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "adam"}}))
    assert list(space.params) == ["optimizer", "beta", "beta1"]
    chosen = suggest(optuna.trial.FixedTrial({"optimizer": "adam", "beta1": 0.85}), space)
    assert chosen == {"optimizer": "adam", "beta1": 0.85}


# ----------------------------------------------------------------------------- space: refusals name the key and value


def test_defaults_origin_and_epochs():
    space = parse_space(p(lr={"type": "float", "low": 1e-4, "high": 1e-1}))
    assert space.epochs == 20 and space.origin == "<space>"
    assert space_error({"params": {}}, origin="<space>").startswith("<space>: ")
    with pytest.raises(SpaceError, match=r"^<space>: "):
        parse_space({"params": {}})
    space = parse_space({"epochs": 3.0, **p(lr={"type": "float", "low": 1e-4, "high": 1e-1})})
    assert space.epochs == 3 and type(space.epochs) is int


@pytest.mark.parametrize("epochs, message", [
    ("many", "s.yaml: epochs: expected a number, got 'many'"),
    (2.5, "s.yaml: epochs: expected a whole number, got 2.5"),
    (10**7, "s.yaml: epochs 10000000 is invalid"),
])
def test_epochs_refusals(epochs, message):
    assert message in space_error({"epochs": epochs, **p(lr={"type": "float", "low": 1e-4, "high": 1e-1})})


def test_unknown_top_level_key_lists_the_allowed_keys():
    msg = space_error({"zzzz": 1, **p(lr={"type": "float", "low": 1e-4, "high": 1e-1})})
    assert msg == "s.yaml: unknown top-level key 'zzzz'; allowed: model, model_sha256, dataset, epochs, params, fixed"
    msg = space_error({"param": {}})
    assert "did you mean 'params'? allowed: model," in msg


@pytest.mark.parametrize("spec, message", [
    ({"type": "float", "low": 1e-4, "high": 1e-1, "log": "yes"}, "params.lr.log: expected true or false, got 'yes'"),
    ({"type": "float", "low": 1e-4, "high": "lots"}, "params.lr.high: expected a number, got 'lots'"),
    ({"type": "float", "low": 1e-4, "high": 1e-1, "step": "x"}, "params.lr.step: expected a number, got 'x'"),
])
def test_range_refusals_name_the_key(spec, message):
    assert message in space_error(p(lr=spec))


def test_a_bound_outside_the_fields_range_is_named():
    assert "params.dropout: high 1.5 is invalid" in space_error(p(dropout={"type": "float", "low": 0.5, "high": 1.5}))


def test_int_step_is_a_whole_number_and_at_most_the_range():
    space = parse_space(p(width={"type": "int", "low": 16, "high": 64, "step": 16.0}))
    assert space.params["width"]["step"] == 16 and type(space.params["width"]["step"]) is int
    assert "params.width.step: expected a whole number, got 2.5" in space_error(
        p(width={"type": "int", "low": 16, "high": 64, "step": 2.5}))
    # step > high - low (here 2 > 1), though below high + low
    assert "params.depth.step: must be > 0 and at most high - low (got 2)" in space_error(
        p(depth={"type": "int", "low": 1, "high": 2, "step": 2}))


def test_one_minus_bounds_and_exclusions():
    assert "needs 0 < low < high < 1" in space_error(p(beta2={"type": "float", "low": 0.0, "high": 0.99, "one_minus": True}))
    assert "one_minus is already a log scale; drop log/step" in space_error(
        p(beta2={"type": "float", "low": 0.9, "high": 0.999, "step": 0.001, "one_minus": True}))


def test_choices_limit_is_a_thousand_and_messages_name_the_choice():
    ok = parse_space(p(width={"type": "categorical", "choices": list(range(1, 1001))}))
    assert len(ok.params["width"]["choices"]) == 1000
    msg = space_error(p(width={"type": "categorical", "choices": list(range(1, 1002))}))
    assert "params.width.choices: 1001 choices; at most 1000 per parameter" in msg
    assert "params.dropout: choice 1.5 is invalid" in space_error(p(dropout={"type": "categorical", "choices": [0.1, 1.5]}))
    assert "repeated choice in [0.1, 0.1]" in space_error(p(dropout={"type": "categorical", "choices": [0.1, 0.1]}))


def test_spec_head_messages():
    assert "params.lr.type: 'floaty' is not float, int or categorical" in space_error(p(lr={"type": "floaty"}))
    msg = space_error(p(optimizer={"type": "categorical", "choices": ["sgd"], "low": 1}))
    assert "unknown key 'low' for type categorical; allowed: choices, role, type, when" in msg
    assert "params.lr.role: 'size' is not one of capacity, regularization" in space_error(
        p(lr={"type": "float", "low": 1e-4, "high": 1e-1, "role": "size"}))


def test_fixed_model_dataset_and_when_messages():
    lr = {"type": "float", "low": 1e-4, "high": 1e-1}
    assert "s.yaml: fixed.dropout: value 2 is invalid" in space_error({"params": {"lr": lr}, "fixed": {"dropout": 2}})
    assert "s.yaml: model: model 'nosuch' is invalid" in space_error({"model": "nosuch", **p(lr=lr)})
    assert space_error({"dataset": 3, **p(lr=lr)}) == "s.yaml: dataset must be a name such as digits or csv:PATH"
    assert space_error(p(lr={**lr, "when": {"lr": 0.01}})) == "s.yaml: params.lr.when refers to itself"
    msg = space_error({"params": {"lr": {**lr, "when": {"optimizer": "nadam"}}}, "fixed": {"optimizer": "adam"}})
    assert "s.yaml: params.lr.when.optimizer: value 'nadam' is invalid" in msg


# ----------------------------------------------------------------------------- space: your own builder's parameters


@pytest.fixture
def builder(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(BUILDER)
    return f"{path}:build"


def test_a_builder_space_routes_its_own_parameters(builder):
    space = parse_space({"model": builder,
                         "params": {"hidden": {"type": "int", "low": 4, "high": 32, "step": 4},
                                    "act": {"type": "categorical", "choices": ["relu", None, 2]},
                                    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
                         "fixed": {"width": 32, "dropout": 0.1}})
    assert space.builder_params == ("hidden", "act") or set(space.builder_params) == {"hidden", "act"}
    assert space.model == builder and len(space.model_sha256) == 64
    assert space.params["hidden"] == {"type": "int", "low": 4, "high": 32, "step": 4}
    assert space.params["act"] == {"type": "categorical", "choices": ["relu", None, 2]}
    assert space.fixed == {"width": 32, "dropout": 0.1}
    cfg = trial_config(space, {"hidden": 8, "act": "relu", "lr": 0.01}, TrainConfig(model_params={"keep": 1}))
    assert cfg.model == builder and cfg.model_sha256 == space.model_sha256
    assert cfg.model_params == {"keep": 1, "hidden": 8, "act": "relu"}
    assert cfg.lr == 0.01 and cfg.width == 32 and cfg.epochs == 20


def test_a_builder_space_fixed_builder_parameters_pass_as_written(builder):
    space = parse_space({"model": builder, "params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1}},
                         "fixed": {"hidden": 12, "act": "tanh", "dropout": 0.2}})
    assert space.fixed == {"hidden": 12, "act": "tanh", "dropout": 0.2}
    cfg = trial_config(space, {"lr": 0.01}, TrainConfig())
    assert cfg.model_params == {"hidden": 12, "act": "tanh"} and cfg.dropout == 0.2
    assert "s.yaml: 'hidden' is both searched and fixed; keep one" in space_error(
        {"model": builder, "params": {"hidden": {"type": "int", "low": 4, "high": 8}}, "fixed": {"hidden": 4}})


@pytest.mark.parametrize("spec, message", [
    ("big", "s.yaml: params.hidden: expected a mapping"),
    ({"type": "categorical", "choices": []}, "params.hidden.choices: give a non-empty list of at most 1000"),
    ({"type": "categorical", "choices": list(range(1001))}, "params.hidden.choices: give a non-empty list of at most 1000"),
    ({"type": "categorical", "choices": [[1]]}, "params.hidden.choices: each choice must be a number, a name, true/false or null"),
    ({"type": "int", "low": 4}, "params.hidden: missing 'high'; give low and high"),
    ({"type": "int", "high": 4}, "params.hidden: missing 'low'; give low and high"),
    ({"type": "int", "low": 8, "high": 8}, "params.hidden: low must be < high (got 8 >= 8)"),
    ({"type": "int", "low": 0, "high": 8, "log": True}, "params.hidden: log scale needs low > 0 (got 0)"),
    ({"type": "int", "low": 2, "high": "x"}, "params.hidden.high: expected a number, got 'x'"),
    ({"type": "int", "low": 2.5, "high": 8}, "params.hidden.low: expected a whole number, got 2.5"),
    ({"type": "int", "low": 2, "high": 8, "step": "x"}, "params.hidden.step: expected a number, got 'x'"),
    ({"type": "int", "low": 2, "high": 8, "when": []}, "params.hidden.when: expected a mapping like"),
    ({"type": "int", "low": 2, "high": 8, "size": 1}, "params.hidden: unknown key 'size' for type int"),
])
def test_builder_parameter_refusals(builder, spec, message):
    assert message in space_error({"model": builder, "params": {"hidden": spec}})


def test_builder_parameter_ranges_are_kept_as_written(builder):
    space = parse_space({"model": builder, "params": {
        "hidden": {"type": "int", "low": 2, "high": 64, "log": True, "role": "capacity"},
        "act": {"type": "categorical", "choices": ["relu", "tanh"], "when": {"hidden": 8}}}})
    assert space.params["hidden"] == {"type": "int", "low": 2, "high": 64, "log": True, "role": "capacity"}
    assert space.params["act"] == {"type": "categorical", "choices": ["relu", "tanh"], "when": {"hidden": [8]}}
    space = parse_space({"model": builder, "params": {"hidden": {"type": "float", "low": 0.5, "high": 2, "step": 0.5}}})
    assert space.params["hidden"] == {"type": "float", "low": 0.5, "high": 2.0, "step": 0.5}
    assert space.distributions() == {"hidden": FloatDistribution(0.5, 2.0, step=0.5)}
    assert type(space.params["hidden"]["high"]) is float
    space = parse_space({"model": builder, "params": {
        "hidden": {"type": "int", "low": 1, "high": 64, "log": True},
        "act": {"type": "categorical", "choices": list(range(1000)), "when": {"hidden": [8, 16]}}}})
    assert space.params["hidden"]["log"] is True and len(space.params["act"]["choices"]) == 1000
    assert space.params["act"]["when"] == {"hidden": [8, 16]}


def test_builder_step_is_typed_and_when_must_be_a_non_empty_mapping(builder):
    space = parse_space({"model": builder, "params": {"hidden": {"type": "int", "low": 2, "high": 10, "step": 2.0}}})
    assert space.params["hidden"]["step"] == 2 and type(space.params["hidden"]["step"]) is int
    for when in ({}, "hidden"):
        assert "params.act.when: expected a mapping" in space_error({"model": builder, "params": {
            "hidden": {"type": "int", "low": 2, "high": 10},
            "act": {"type": "categorical", "choices": ["relu"], "when": when}}})


def test_a_missing_builder_file_is_named_with_the_space_file(tmp_path):
    assert space_error({"model": f"{tmp_path}/none.py:build", **p(lr={"type": "float", "low": 1e-4, "high": 1e-1})}
                       ).startswith("s.yaml: ")


# ----------------------------------------------------------------------------- train: check()


def test_check_refuses_before_a_run(iris, digits, tmp_path):
    check(TrainConfig(batch_size=16), iris)  # fits: nothing raised
    check(TrainConfig(batch_size=100_000), iris)  # larger than the split: the full batch, not a failure
    with pytest.raises(ConfigError):
        check(TrainConfig(model="cnn"), iris)  # a ConvNet on tabular data
    check(TrainConfig(model="cnn"), digits)
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(BUILDER)
    bad.write_text(WRONG_SHAPE)
    check(TrainConfig(model=f"{good}:build"), iris)
    with pytest.raises(ConfigError):
        check(TrainConfig(model=f"{bad}:build"), iris)  # 5 outputs for 3 classes: refused before training


# ----------------------------------------------------------------------------- train: optimizer settings


def test_every_optimizer_gets_lr_eps_and_weight_decay(iris):
    model = build_model(TrainConfig(), iris.input_shape, iris.out_dim)
    for name in ("sgd", "momentum", "rmsprop", "adam"):
        g = make_optimizer(TrainConfig(optimizer=name, lr=0.005, eps=1e-6, weight_decay=1e-3), model).param_groups[0]
        assert (g["lr"], g["weight_decay"]) == (0.005, 1e-3), name
        if name in ("rmsprop", "adam"):
            assert g["eps"] == 1e-6, name


# ----------------------------------------------------------------------------- train: fit()


def test_a_run_reports_its_task_shape_and_honest_times(iris):
    t0 = time.perf_counter()
    hist = fit(TrainConfig(epochs=2, width=16), iris, device=CPU)
    wall = time.perf_counter() - t0
    assert (hist.task, hist.input_shape, hist.out_dim) == ("multiclass", iris.input_shape, 3)
    assert hist.batch_size_used == 64 and hist.to_dict()["batch_size_used"] == 64
    assert 0 < hist.seconds <= wall
    assert all(0 < row["seconds"] <= wall for row in hist.curve)


def test_fit_refuses_an_unknown_device(iris):
    with pytest.raises(ConfigError, match="unknown device"):
        fit(TrainConfig(epochs=1), iris, device="tpu")


@pytest.mark.parametrize("data", ["iris", "diabetes"])
def test_epoch_rows_are_the_running_mean_loss_and_error_of_the_epoch(request, data):
    """With a learning rate too small to move the weights, the epoch's running averages equal an
    evaluation of the final weights: the loss is the per-example mean (batches weighted by size,
    the last batch smaller), the error a rate or an RMSE in the target's units. The row's train
    error is the eval-mode one on the fixed sample, and the run's train error is that same number."""
    splits = request.getfixturevalue(data)
    hist = fit(TrainConfig(optimizer="sgd", lr=1e-12, epochs=1, width=16, batch_size=32), splits, device=CPU)
    assert len(splits.x_train) % 32 != 0
    row = hist.curve[0]
    final = evaluate(hist.model, splits.x_train, splits.y_train, splits.task, splits.y_scale)
    assert row["train_loss"] == pytest.approx(final["loss"], rel=1e-4)
    assert row["running_error"] == pytest.approx(final["error"], rel=1e-4)
    k = min(len(splits.y_dev), len(splits.y_train), 10_000)
    rows = torch.randperm(len(splits.y_train), generator=torch.Generator().manual_seed(splits.manifest["seed"]))[:k].sort().values
    sample = evaluate(hist.model, splits.x_train[rows], splits.y_train[rows], splits.task, splits.y_scale)
    assert row["train_error"] == pytest.approx(sample["error"], rel=1e-9)
    assert row["train_error"] == hist.train_error


def test_classification_divergence_is_caught_by_the_loss(iris):
    """A classifier's error count stays finite when its outputs overflow: the loss tells."""
    seen = []
    t0 = time.perf_counter()
    hist = fit(TrainConfig(optimizer="sgd", lr=1e30, epochs=3, width=16), iris,
               on_epoch=lambda e, m: seen.append((e, m)), device=CPU)
    wall = time.perf_counter() - t0
    assert hist.status == "diverged"
    last = hist.curve[-1]
    assert set(last) == {"epoch", "train_loss", "train_error", "running_error", "dev_loss", "dev_error", "seconds"}
    assert last["epoch"] == hist.epochs_run
    assert all(math.isnan(last[k]) for k in ("train_loss", "train_error", "running_error", "dev_loss", "dev_error"))
    assert 0 < last["seconds"] <= wall
    assert seen[-1] == (hist.epochs_run, last)


def test_binary_logit_zero_is_the_negative_class():
    """sigmoid(0) = 0.5 is not > 0.5: a zero logit predicts 0, as in `evaluate` and `predict`."""
    out = torch.tensor([[0.0], [0.0], [1.0], [-1.0]])
    assert _wrong("binary", out, torch.tensor([0.0, 0.0, 1.0, 0.0])).item() == 0
    assert _wrong("binary", out, torch.tensor([1, 1, 1, 0])).item() == 2


def test_augmentation_level_and_flips_change_the_run(digits):
    cfg = TrainConfig(epochs=1, width=16, augment="light")
    light = fit(cfg, digits, device=CPU).curve[0]["train_loss"]
    strong = fit(cfg.replace(augment="strong"), digits, device=CPU).curve[0]["train_loss"]
    flipped = fit(cfg, dataclasses.replace(digits, flips_ok=True), device=CPU).curve[0]["train_loss"]
    assert len({light, strong, flipped}) == 3


# ----------------------------------------------------------------------------- train: check_device()


@pytest.fixture
def gpus(monkeypatch):
    """This machine as one with two CUDA GPUs (only the availability queries answer differently)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("TUNECTL_DEVICE", raising=False)


def test_device_names_on_a_two_gpu_machine(gpus):
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    assert check_device("cpu:0") == torch.device("cpu")
    assert check_device(" CUDA ") == torch.device("cuda")
    assert check_device("cuda:1") == torch.device("cuda:1")
    assert check_device(None) == torch.device("cuda")
    with pytest.raises(ConfigError) as e:
        check_device("cuda:2")
    assert str(e.value) == "--device cuda:2: no such GPU (this machine has: cpu, cuda:0, cuda:1); use one of those"
    for bad in ("cpu:1", "mps:1", "cuda:x", "cuda:\u00b2", "tpu", "cuda:0:0"):
        with pytest.raises(ConfigError) as e:
            check_device(bad)
        assert str(e.value) == (f"--device {bad}: unknown device; use cpu, cuda, cuda:N or mps "
                                f"(this machine has: cpu, cuda:0, cuda:1)"), bad


def test_device_refusals_name_their_source_and_stay_short(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv("TUNECTL_DEVICE", raising=False)
    with pytest.raises(ConfigError) as e:
        check_device("cuda")
    assert str(e.value) == "--device cuda: this machine has no usable CUDA GPU (this machine has: cpu); use --device cpu"
    with pytest.raises(ConfigError) as e:
        check_device("mps")
    assert str(e.value) == "--device mps: Apple's MPS is not available here (this machine has: cpu); use --device cpu"
    monkeypatch.setenv("TUNECTL_DEVICE", "tpu")
    with pytest.raises(ConfigError, match=r"^TUNECTL_DEVICE=tpu: unknown device"):
        check_device()
    monkeypatch.delenv("TUNECTL_DEVICE")
    sixty, long = "x" * 60, "y" * 61
    with pytest.raises(ConfigError, match=rf"^--device {sixty}: unknown"):
        check_device(sixty)
    with pytest.raises(ConfigError, match=rf"^--device {'y' * 57}\.\.\.: unknown"):
        check_device(long)


def test_mps_is_accepted_where_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.delenv("TUNECTL_DEVICE", raising=False)
    assert check_device("mps") == torch.device("mps")
    assert check_device("mps:0") == torch.device("mps")
