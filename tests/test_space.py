"""Search-space files: every validation error names the file, the key and the fix; conditional
parameters; 1 - beta on a log scale; the shipped spaces load."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from tunectl.config import TrainConfig
from tunectl.errors import SpaceError
from tunectl.space import load_space, parse_space, suggest, trial_config

REPO = Path(__file__).resolve().parents[1]
GOOD = """\
model: mlp
dataset: digits
epochs: 5
params:
  lr:         {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  width:      {type: int, low: 8, high: 64, log: true}
  optimizer:  {type: categorical, choices: [adam, momentum]}
  beta:       {type: float, low: 0.8, high: 0.99, when: {optimizer: [momentum]}}
fixed:
  activation: relu
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def space_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as e:
        load_space(path)
    msg = str(e.value)
    assert msg.startswith(str(path)), msg  # every message names the file first
    assert "\n" not in msg  # one line at a terminal
    return msg


def with_param(line: str) -> str:
    """GOOD plus one more line under params."""
    return GOOD.replace("fixed:\n", f"  {line}\nfixed:\n")


# ----------------------------------------------------------------------------- valid files


def test_good_space_loads_with_its_defaults(tmp_path):
    sp = load_space(write(tmp_path, GOOD))
    assert (sp.model, sp.dataset, sp.epochs) == ("mlp", "digits", 5)
    assert sp.params["lr"] == {"type": "float", "low": 1e-4, "high": 0.1, "log": True}
    assert sp.params["width"] == {"type": "int", "low": 8, "high": 64, "log": True}
    assert sp.params["beta"]["when"] == {"optimizer": ["momentum"]}
    assert sp.fixed == {"activation": "relu"}
    assert sp.origin == str(tmp_path / "space.yaml")


@pytest.mark.parametrize("path", sorted((REPO / "searchspaces").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_spaces_load(path):
    sp = load_space(path)
    assert sp.params and sp.epochs >= 1
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    trial_config(sp, suggest(trial, sp), TrainConfig())  # every suggestion makes a valid config


def test_mlp_space_is_the_practitioners_list():
    sp = load_space(REPO / "searchspaces" / "mlp.yaml")
    assert {"lr", "beta", "beta1", "beta2", "depth", "width", "activation", "dropout", "weight_decay",
            "batch_size", "optimizer"} <= set(sp.params)
    assert sp.params["lr"].get("log") and sp.params["beta2"].get("one_minus") and sp.params["beta1"].get("one_minus")
    assert all(b & (b - 1) == 0 for b in sp.params["batch_size"]["choices"])  # powers of two
    assert sp.params["beta"]["when"] == {"optimizer": ["momentum", "rmsprop"]}


def test_exponent_without_a_dot_is_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-4 as the string '1e-4'; the file means the number
    sp = load_space(write(tmp_path, GOOD.replace("low: 1.0e-4, high: 1.0e-1", "low: 1e-4, high: 1e-1")))
    assert sp.params["lr"]["low"] == 1e-4 and isinstance(sp.params["lr"]["low"], float)
    assert sp.params["lr"]["high"] == 0.1
    sp = load_space(write(tmp_path, GOOD.replace("  activation: relu", "  weight_decay: 5e-4")))
    assert sp.fixed["weight_decay"] == 5e-4


def test_conditions_are_ordered_after_what_they_test(tmp_path):
    text = """\
params:
  beta:      {type: float, low: 0.8, high: 0.99, when: {optimizer: momentum}}
  optimizer: {type: categorical, choices: [adam, momentum]}
"""
    sp = load_space(write(tmp_path, text))
    assert list(sp.params) == ["optimizer", "beta"]
    assert sp.params["beta"]["when"] == {"optimizer": ["momentum"]}  # a single value is a list of one


def test_fingerprint_tells_searches_apart(tmp_path):
    a = load_space(write(tmp_path, GOOD, "a.yaml"))
    same = load_space(write(tmp_path, GOOD.replace("dataset: digits", "dataset: iris"), "b.yaml"))
    wider = load_space(write(tmp_path, GOOD.replace("high: 0.99", "high: 0.999"), "c.yaml"))
    assert a.fingerprint() == same.fingerprint()  # the data set is checked on its own, by the split
    assert a.fingerprint() != wider.fingerprint()
    assert parse_space(a.to_dict()).fingerprint() == a.fingerprint()  # what a study stores round-trips


# ----------------------------------------------------------------------------- every validation error


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("  width:", "  widht:"), ["params.widht", "did you mean 'width'?"]),
    (GOOD.replace("  activation: relu", "  activaton: relu"), ["fixed.activaton", "did you mean 'activation'?"]),
    (GOOD.replace("params:", "parms:"), ["unknown top-level key 'parms'", "did you mean 'params'?"]),
    (with_param("dropout: {type: float, lo: 0.0, high: 0.5}"), ["params.dropout", "unknown key 'lo'", "allowed:"]),
    (with_param("dropout: {type: real, low: 0.0, high: 0.5}"), ["params.dropout.type", "float, int or categorical"]),
], ids=["param", "fixed", "top-level", "spec-key", "type"])
def test_unknown_keys_name_the_key_and_the_closest_fix(tmp_path, text, expected):
    msg = space_error(tmp_path, text)
    for part in expected:
        assert part in msg, msg


@pytest.mark.parametrize("line, expected", [
    ("dropout: {type: float, low: zero, high: 0.5}", ["params.dropout.low", "expected a number", "'zero'"]),
    ("dropout: {type: float, low: true, high: 0.5}", ["params.dropout.low", "expected a number"]),
    ("depth: {type: float, low: 1, high: 3}", ["params.depth", "whole numbers", "type: int"]),
    ("depth: {type: int, low: 1.5, high: 3}", ["params.depth.low", "whole number"]),
    ("activation: {type: float, low: 0, high: 1}", ["params.activation", "type: categorical"]),
    ("dropout: 0.2", ["params.dropout", "expected a mapping"]),
    ("dropout: {type: float, low: 0.0, high: 0.5, log: yes please}", ["params.dropout.log", "true or false"]),
    ("batch_size: {type: categorical, choices: [32, big]}", ["params.batch_size", "'big'", "batch_size"]),
    ("activation: {type: categorical, choices: [relu, swish]}", ["params.activation", "'swish'"]),
    ("dropout: {type: float, high: 0.5}", ["params.dropout", "missing 'low'"]),
], ids=["not-a-number", "bool", "float-for-int", "fraction-for-int", "number-for-name", "not-a-mapping",
        "log-not-bool", "choice-type", "choice-value", "missing-low"])
def test_wrong_types_are_refused(tmp_path, line, expected):
    msg = space_error(tmp_path, with_param(line))
    for part in expected:
        assert part in msg, msg


def test_low_must_be_below_high(tmp_path):
    msg = space_error(tmp_path, GOOD.replace("low: 1.0e-4, high: 1.0e-1", "low: 1.0e-1, high: 1.0e-2"))
    assert "params.lr" in msg and "low must be < high" in msg and "0.1 >= 0.01" in msg and "swap" in msg
    msg = space_error(tmp_path, GOOD.replace("low: 8, high: 64", "low: 8, high: 8"))
    assert "params.width" in msg and "low must be < high" in msg


def test_log_scale_needs_a_positive_low(tmp_path):
    msg = space_error(tmp_path, GOOD.replace("low: 1.0e-4, high: 1.0e-1", "low: 0.0, high: 1.0e-1"))
    assert "params.lr" in msg and "log scale needs low > 0" in msg and "low: 1.0e-5" in msg
    msg = space_error(tmp_path, with_param("weight_decay: {type: float, low: -1.0e-3, high: 1.0e-2, log: true}"))
    assert "params.weight_decay" in msg and "log scale needs low > 0" in msg


@pytest.mark.parametrize("line", [
    "dropout: {type: float, low: 0.0, high: 1.0}",
    "dropout: {type: float, low: -0.1, high: 0.5}",
    "dropout: {type: categorical, choices: [0.0, 1.5]}",
])
def test_dropout_outside_0_1_is_refused(tmp_path, line):
    msg = space_error(tmp_path, with_param(line))
    assert "params.dropout" in msg and "[0, 1)" in msg
    msg = space_error(tmp_path, GOOD.replace("  activation: relu", "  dropout: 1.0"))
    assert "fixed.dropout" in msg and "[0, 1)" in msg


def test_categorical_needs_choices(tmp_path):
    for line in ("optimizer: {type: categorical, choices: []}", "optimizer: {type: categorical}",
                 "optimizer: {type: categorical, choices: adam}"):
        msg = space_error(tmp_path, GOOD.replace("  optimizer:  {type: categorical, choices: [adam, momentum]}",
                                                 "  " + line))
        assert "params.optimizer.choices" in msg and "non-empty list" in msg, msg
    msg = space_error(tmp_path, with_param("batch_size: {type: categorical, choices: [32, 32]}"))
    assert "repeated choice" in msg


def test_when_must_name_a_known_parameter(tmp_path):
    msg = space_error(tmp_path, GOOD.replace("when: {optimizer: [momentum]}", "when: {optimiser: [momentum]}"))
    assert "params.beta.when names 'optimiser'" in msg and "add it to params or fixed" in msg
    msg = space_error(tmp_path, GOOD.replace("when: {optimizer: [momentum]}", "when: {optimizer: [momentun]}"))
    assert "params.beta.when.optimizer" in msg and "'momentun'" in msg
    msg = space_error(tmp_path, GOOD.replace("when: {optimizer: [momentum]}", "when: [momentum]"))
    assert "params.beta.when" in msg and "expected a mapping" in msg


def test_when_conditions_may_not_form_a_cycle(tmp_path):
    text = """\
params:
  optimizer: {type: categorical, choices: [adam, momentum], when: {activation: [relu]}}
  activation: {type: categorical, choices: [relu, tanh], when: {optimizer: [adam]}}
"""
    assert "form a cycle" in space_error(tmp_path, text)


def test_yaml_syntax_error_names_the_line(tmp_path):
    text = GOOD.replace("log: true}\n  width", "log: true\n  width")  # an unclosed flow mapping
    msg = space_error(tmp_path, text)
    assert "line " in msg and "YAML" in msg and "fix the syntax" in msg
    line = int(msg.split("line ")[1].split(",")[0])
    assert 5 <= line <= 7, msg  # at (or just after) the broken lr line, the 5th


@pytest.mark.parametrize("text, expected", [
    ("- lr\n- width\n", "expected a mapping with 'params'"),
    ("epochs: 5\n", "'params' must map at least one hyperparameter"),
    ("params:\n  epochs: {type: int, low: 1, high: 9}\n", "set `epochs:` at the top level"),
    ("params:\n  seed: {type: int, low: 1, high: 9}\n", "the seed is the study's"),
    (GOOD.replace("  activation: relu", "  lr: 0.1"), "'lr' is both searched and fixed"),
    (GOOD.replace("epochs: 5", "epochs: 0"), "epochs must be >= 1"),
    (GOOD.replace("model: mlp", "model: resnet"), "model"),
    (with_param("dropout: {type: float, low: 0.0, high: 0.5, step: 0.0}"), "params.dropout.step"),
    (with_param("dropout: {type: float, low: 0.0, high: 0.5, step: 0.7}"), "params.dropout.step"),
    (with_param("weight_decay: {type: float, low: 1.0e-5, high: 0.1, log: true, step: 0.01}"), "step and log"),
    (with_param("beta2: {type: float, low: 0.9, high: 1.0, one_minus: true}"), "0 < low < high < 1"),
    (with_param("beta2: {type: float, low: 0.9, high: 0.999, one_minus: true, log: true}"), "drop log"),
], ids=["not-a-mapping", "no-params", "epochs-searched", "seed-searched", "searched-and-fixed", "epochs-0",
        "bad-model", "step-0", "step-too-big", "step-and-log", "one-minus-range", "one-minus-log"])
def test_other_impossible_spaces(tmp_path, text, expected):
    assert expected in space_error(tmp_path, text)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(SpaceError, match="no such search-space file"):
        load_space(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- suggest()


def test_conditional_parameter_only_under_its_condition(tmp_path):
    sp = load_space(write(tmp_path, GOOD))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        chosen = suggest(trial, sp)
        seen.add(chosen["optimizer"])
        assert ("beta" in chosen) == (chosen["optimizer"] == "momentum")
        assert ("beta" in trial.params) == (chosen["optimizer"] == "momentum")  # Optuna never sees it
        cfg = trial_config(sp, chosen, TrainConfig(seed=3))
        assert cfg.epochs == 5 and cfg.seed == 3 and cfg.activation == "relu"
        if chosen["optimizer"] == "adam":
            assert cfg.beta == TrainConfig.beta  # untouched default
        else:
            assert 0.8 <= cfg.beta <= 0.99 and cfg.beta == chosen["beta"]
        study.tell(trial, 0.0)
    assert seen == {"adam", "momentum"}


def test_when_on_a_fixed_value(tmp_path):
    text = GOOD.replace("  optimizer:  {type: categorical, choices: [adam, momentum]}\n", "").replace(
        "  activation: relu", "  optimizer: adam")
    trial = optuna.create_study().ask()
    assert "beta" not in suggest(trial, load_space(write(tmp_path, text)))


def test_one_minus_makes_0_9_0_99_0_999_equally_reachable(tmp_path):
    text = "params:\n  beta2: {type: float, low: 0.9, high: 0.9999, one_minus: true}\n"
    sp = load_space(write(tmp_path, text))
    dist = sp.distributions()["one_minus_beta2"]
    assert dist.log and dist.low == pytest.approx(1e-4) and dist.high == pytest.approx(0.1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = []
    for _ in range(300):
        trial = study.ask()
        values.append(suggest(trial, sp)["beta2"])
        study.tell(trial, 0.0)
    assert all(0.9 - 1e-12 <= v <= 0.9999 + 1e-12 for v in values)
    buckets = [sum(lo <= v < hi for v in values) / len(values) for lo, hi in ((0.9, 0.99), (0.99, 0.999), (0.999, 1))]
    assert all(0.25 <= b <= 0.42 for b in buckets), buckets  # a third each; a linear scale gives 0.91/0.08/0.01
    fixed = optuna.trial.FixedTrial({"one_minus_beta2": 0.001})
    assert suggest(fixed, sp)["beta2"] == pytest.approx(0.999)
    assert math.isclose(trial_config(sp, {"beta2": 0.999}, TrainConfig()).beta2, 0.999)
