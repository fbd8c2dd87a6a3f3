"""Property-based tests (hypothesis) of the three parsers that read what users type.

- search spaces: any YAML document is a valid Space or a SpaceError, never another
  exception; a valid Space builds its Optuna distributions, every point a trial can sample
  from it is a valid TrainConfig, and it round-trips through dump_space (what
  `--next-space` writes) and back to the same fingerprint;
- `--set key=value`: a ConfigError or values that TrainConfig accepts, and any valid
  config's values written as `--set` strings read back unchanged;
- `--timeout`: a TunectlError or a positive, finite number of seconds.

Examples are derandomized and the example database is off, so CI runs the same cases each time.
"""

from __future__ import annotations

import math
import warnings

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tunectl import config as C
from tunectl.config import FIELD_NAMES, FIELD_TYPES, TrainConfig
from tunectl.errors import ConfigError, SpaceError, TunectlError
from tunectl.space import Space, dump_space, load_space, parse_space, suggest, trial_config
from tunectl.workers import parse_timeout

FUZZ = settings(max_examples=200, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
HEAVY = settings(FUZZ, max_examples=100)  # each valid example goes through Optuna and a YAML round trip

# ----------------------------------------------------------------------------- documents

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-10, 10),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2), st.text(max_size=12),
    st.sampled_from(["1e-3", "1.0e-5", "nan", "inf", "-inf", "0x10", "1_000", "", "  ", "true", "adam", "relu"]),
)
keys = st.one_of(st.sampled_from(["params", "fixed", "model", "dataset", "epochs", "type", "low", "high", "log", "step",
                                  "choices", "when", "one_minus", *FIELD_NAMES]), st.text(max_size=8), st.integers())
any_doc = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                       max_leaves=25)

# valid spaces: every searchable field with a sensible spec, conditions and fixed values;
# near-valid ones: a valid space with one mistake put in (a key dropped, a value made wrong, ...)
FLOATS = {"lr": (1e-6, 1.0), "dropout": (0.0, 0.9), "beta": (0.0, 0.999), "beta1": (0.0, 0.999),
          "beta2": (0.0, 0.9999), "eps": (1e-10, 1e-3), "weight_decay": (0.0, 0.1), "body_lr_scale": (0.0, 2.0)}
INTS = {"depth": (0, 8), "width": (1, 1024), "batch_size": (0, 512), "patience": (0, 20), "conv_layers": (1, 5),
        "filters": (1, 128)}
CHOICES = {"model": C.MODELS, "activation": C.ACTIVATIONS, "optimizer": C.OPTIMIZERS, "augment": C.AUGMENTS,
           "arch": C.ARCHS, "freeze": ("none", "body", "all_but_last_1", "all_but_last_2"), "kernel_size": (1, 3, 5, 7),
           "init_from": ("", "a.pt", "runs/x/model.pt", "yes", "1e3", "null", "é ü")}
SEARCHABLE = sorted({*FLOATS, *INTS, *CHOICES})


def _value(name: str):
    if name in CHOICES:
        return st.sampled_from(CHOICES[name])
    if name in FLOATS:
        return st.floats(*FLOATS[name])
    return st.integers(*INTS[name])


@st.composite
def valid_spec(draw, name: str) -> dict:
    if name in CHOICES or draw(st.integers(0, 3)) == 0:
        return {"type": "categorical", "choices": draw(st.lists(_value(name), min_size=1, max_size=4, unique_by=str))}
    if name in FLOATS:
        low, high = sorted(draw(st.lists(st.floats(*FLOATS[name]), min_size=2, max_size=2, unique=True)))
        spec = {"type": "float", "low": low, "high": high}
    else:
        low, high = sorted(draw(st.lists(st.integers(*INTS[name]), min_size=2, max_size=2, unique=True)))
        spec = {"type": "int", "low": low, "high": high}
    flavour = draw(st.sampled_from(["plain", "log", "step", "one_minus"]))
    if flavour == "log" and low > 0:
        spec["log"] = True
    elif flavour == "step":
        spec["step"] = draw(st.integers(1, high - low) if spec["type"] == "int" else st.floats(
            (high - low) / 100, high - low))
    elif flavour == "one_minus" and name.startswith("beta") and 0 < low:
        spec["one_minus"] = True
    return spec


@st.composite
def valid_doc(draw) -> dict:
    searched = draw(st.lists(st.sampled_from(SEARCHABLE), min_size=1, max_size=5, unique=True))
    params = {n: draw(valid_spec(n)) for n in searched}
    rest = [n for n in SEARCHABLE if n not in searched]
    fixed = {n: draw(_value(n)) for n in draw(st.lists(st.sampled_from(rest), max_size=3, unique=True))} if rest else {}
    # a condition on an earlier categorical (or a fixed value) with some of its values
    for i, n in enumerate(searched[1:], 1):
        parents = [p for p in searched[:i] if params[p]["type"] == "categorical"] + list(fixed)
        if parents and draw(st.integers(0, 2)) == 0:
            p = draw(st.sampled_from(parents))
            pool = params[p]["choices"] if p in params else [fixed[p]]
            params[n]["when"] = {p: draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique_by=str))}
    doc = {"params": params, "fixed": fixed, "epochs": draw(st.integers(1, 100))}
    if draw(st.booleans()):
        doc["model"] = draw(st.sampled_from(C.MODELS))
    if draw(st.booleans()):
        doc["dataset"] = draw(st.sampled_from(["digits", "csv:data/x.csv", "folder:imgs"]))
    return doc


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.integers(10**300, 10**400), st.floats(),
                 st.sampled_from(["", "x", "nan", "1e-4", "-inf", "adam", [], {}, [1, 2], {"a": 1}]))


@st.composite
def near_valid_doc(draw) -> dict:
    """A valid doc with one mistake: a value replaced by junk, a key dropped, or a key added."""
    doc = draw(valid_doc())
    node = doc
    while True:  # walk down to a random mapping or list
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        action = draw(st.sampled_from(["junk", "drop", "add"]))
        if action == "junk":
            node[key] = draw(JUNK)
        elif action == "drop":
            del node[key]
        elif isinstance(node, dict):
            node[draw(st.sampled_from(["lo", "choice", "when", "log", "step", "widht", "seed", "epochs"]))] = draw(JUNK)
        else:
            node.append(draw(JUNK))
        break
    return doc


def check_valid_space(space: Space) -> None:
    """What a valid Space promises: Optuna takes it, any sample is a valid config, it round-trips."""
    assert isinstance(space, Space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns when it narrows a range to fit a step
        space.distributions()
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(2):
            cfg = trial_config(space, suggest(study.ask(), space), TrainConfig())
            assert isinstance(cfg, TrainConfig)
    text = dump_space(space, ["written by the fuzz test"])
    again = parse_space(yaml.safe_load(text), "<again>")
    assert again.fingerprint() == space.fingerprint()
    assert again.to_dict() == space.to_dict()


optuna.logging.set_verbosity(optuna.logging.ERROR)


@FUZZ
@given(any_doc)
def test_any_document_is_a_space_or_a_space_error(doc):
    try:
        space = parse_space(doc, "fuzz.yaml")
    except SpaceError as e:
        assert str(e).startswith("fuzz.yaml")  # (the CLI escapes a line break a key may hold)
        return
    check_valid_space(space)


@HEAVY
@given(valid_doc())
def test_valid_spaces_round_trip(doc):
    check_valid_space(parse_space(doc, "valid.yaml"))


@FUZZ
@given(near_valid_doc())
def test_near_valid_spaces_are_valid_or_a_space_error(doc):
    try:
        space = parse_space(doc, "near.yaml")
    except SpaceError as e:
        assert str(e).startswith("near.yaml")
        return
    check_valid_space(space)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "space.yaml"


@HEAVY
@given(text=st.one_of(st.text(max_size=200), st.builds(yaml.safe_dump, near_valid_doc()),
                      st.builds(lambda d, cut: yaml.safe_dump(d)[:cut], near_valid_doc(), st.integers(0, 80))))
def test_any_file_text_is_a_space_or_a_space_error(space_file, text):
    """load_space on what a user may save: random text, near-valid YAML, YAML cut off mid-way."""
    space_file.write_text(text, encoding="utf-8")
    try:
        space = load_space(space_file)
    except SpaceError as e:
        assert str(e).startswith(str(space_file))
        return
    check_valid_space(space)


def test_the_shipped_spaces_round_trip():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "searchspaces").glob("*.yaml")):
        check_valid_space(load_space(path))


# ----------------------------------------------------------------------------- --set key=value

set_items = st.lists(st.one_of(
    st.text(max_size=20),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from([*FIELD_NAMES, "widht", "lr "]) | st.text(max_size=6),
              st.one_of(st.text(max_size=10), st.integers().map(str), st.floats().map(repr),
                        st.sampled_from(["full", "1e3", "1e400", "nan", "64.0", "2.5", " adam ", "", "="]))),
), max_size=5)


@FUZZ
@given(set_items)
def test_any_set_is_a_config_error_or_values_trainconfig_accepts(items):
    try:
        values = C.parse_set(items)
    except ConfigError:
        return
    try:
        cfg = C.from_dict(values)
    except ConfigError:  # a well-typed value out of range (lr=-1), or a name that is not tunectl's: refused by name
        return
    # a name TrainConfig does not know is kept (typed as YAML) for your own builder, and refused otherwise
    assert set(values) <= set(FIELD_NAMES)
    assert all(getattr(cfg, k) == v for k, v in values.items())


def field_values():
    """A strategy per TrainConfig field, drawing from its valid domain (large and odd values included)."""
    unit = st.floats(0, 1, exclude_max=True)
    positive = st.floats(0, exclude_min=True, allow_infinity=False)
    domains = {
        "model": st.sampled_from(C.MODELS), "activation": st.sampled_from(C.ACTIVATIONS),
        "optimizer": st.sampled_from(C.OPTIMIZERS), "augment": st.sampled_from(C.AUGMENTS),
        "arch": st.sampled_from(C.ARCHS), "freeze": st.sampled_from(["none", "body", "all_but_last_0", "all_but_last_12"]),
        "init_from": st.text(max_size=20).map(str.strip),
        "dropout": unit, "beta": unit, "beta1": unit, "beta2": unit, "lr": positive, "eps": positive,
        "weight_decay": st.floats(0, allow_infinity=False), "body_lr_scale": st.floats(0, allow_infinity=False),
        "kernel_size": st.integers(0, C.LIMITS["kernel_size"][0] // 2).map(lambda k: 2 * k + 1),
        "seed": st.integers(0, C.MAX_SEED),
        "model_sha256": st.sampled_from(["", "0" * 64, "e36659b8830d8d04f50788bd645c34ba9537e9d8300d84d69f43731b1a734123"]),
    }
    for n in ("depth", "batch_size", "patience"):  # up to each field's cap (config.LIMITS)
        domains[n] = st.integers(0, C.LIMITS[n][0])
    for n in ("width", "conv_layers", "filters", "epochs", "hidden", "embed"):
        domains[n] = st.integers(1, C.LIMITS[n][0])
    domains["cell"] = st.sampled_from(C.CELLS)
    domains["bidirectional"] = st.booleans()
    domains["fast_curves"] = st.booleans()
    domains["clip_norm"] = st.floats(0, allow_infinity=False)
    domains["adv_eps"] = st.floats(0, C.MAX_ADV_EPS)
    # a new field needs its domain here; model_params (your builder's own parameters) is a mapping, not a --set value
    assert set(domains) == set(FIELD_NAMES) - {"model_params"}
    return st.fixed_dictionaries({}, optional=domains)


@FUZZ
@given(field_values())
def test_a_valid_config_round_trips_through_set_strings(values):
    cfg = C.from_dict(values)
    items = [f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()]
    assert C.from_dict(C.parse_set(items)) == cfg


# ----------------------------------------------------------------------------- --timeout


@FUZZ
@given(st.one_of(st.text(max_size=12), st.text(alphabet="0123456789.smhd ", max_size=12),
                 st.from_regex(r"\A[0-9]{1,400}[smhd]?\Z")))
def test_any_timeout_is_an_error_or_positive_seconds(text):
    try:
        seconds = parse_timeout(text)
    except TunectlError as e:
        assert "--timeout" in str(e) and "\n" not in str(e)
        return
    assert isinstance(seconds, float) and seconds > 0 and math.isfinite(seconds)


@FUZZ
@given(st.integers(0, 48), st.integers(0, 59), st.integers(0, 59), st.booleans())
def test_durations_parse_to_their_seconds(h, m, s, upper):
    assume(h or m or s)
    text = "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v)
    assert parse_timeout(text.upper() if upper else text) == 3600 * h + 60 * m + s


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("8h", 28800), ("1h30m", 5400), ("2d", 172800),
                                           ("45", 45), (" 1.5h ", 5400), ("0.5m", 30)])
def test_known_timeouts(text, seconds):
    assert parse_timeout(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5m", "soon", "1e3", "5x", "1h-30m", "inf", "9" * 400 + "d"])
def test_bad_timeouts(text):
    with pytest.raises(TunectlError, match="--timeout"):
        parse_timeout(text)
