"""Pins of what the README promises, number by number: the diagnosis limits, the data-curve rule,
the pruner and samplers that `tune` builds, and the device order.

Each number is checked just inside and just outside its limit, so that changing a default
(0.02 -> 0.05, Hyperband's min_resource 3 -> 1, ...) fails a named test here. All in-process
and fast (a few seconds together): no training.
"""

from __future__ import annotations

import inspect
import math

import optuna
import pytest
import torch

from tunectl import diagnose as D
from tunectl.diagnose import Thresholds, data_curve_verdict, diagnose, verdict
from tunectl.errors import TunectlError
from tunectl.space import parse_space
from tunectl.train import pick_device
from tunectl.tune import PRUNERS, SAMPLERS, make_pruner, make_sampler

EPS = 1e-4
P, S = optuna.pruners, optuna.samplers
REAL = {name: getattr(m, name) for m in (P, S) for name in m.__all__}  # before any spy replaces them

# ----------------------------------------------------------------------------- diagnosis limits


def test_default_limits_are_two_points_of_error_rate():
    """README: "The limits default to 0.02 (2 points of error rate)". Catches 0.02 -> 0.05 (or 0.01)."""
    for task in ("binary", "multiclass"):
        d = diagnose(0.1, 0.2, task=task)
        assert d.thresholds == {"bias": 0.02, "variance": 0.02, "unit": "error rate"}
        # bias just inside / just outside 0.02 (variance 0)
        assert diagnose(0.02 - EPS, 0.02 - EPS, task=task).diagnosis == "ok"
        assert diagnose(0.02 + EPS, 0.02 + EPS, task=task).diagnosis == "high_bias"
        # variance just inside / just outside 0.02 (bias 0)
        assert diagnose(0.0, 0.02 - EPS, task=task).diagnosis == "ok"
        assert diagnose(0.0, 0.02 + EPS, task=task).diagnosis == "high_variance"
        assert diagnose(0.02 + EPS, 0.04 + 3 * EPS, task=task).diagnosis == "high_bias_high_variance"


def test_avoidable_bias_is_measured_from_human_error():
    # train 0.30, human 0.29: avoidable bias 0.01 < 0.02 -> not biased; human 0.27: 0.03 -> biased
    assert diagnose(0.30, 0.30, human_error=0.29).diagnosis == "ok"
    assert diagnose(0.30, 0.30, human_error=0.27).diagnosis == "high_bias"
    d = diagnose(0.30, 0.35, human_error=0.27)
    assert (d.avoidable_bias, d.variance) == (pytest.approx(0.03), pytest.approx(0.05))


def test_limit_is_exclusive():
    """A number *above* its limit is high; the limit itself is not (verdict's strict >)."""
    assert verdict(0.5, 0.5, 0.5, 0.5) == "ok"
    assert verdict(math.nextafter(0.5, 1), 0.5, 0.5, 0.5) == "high_bias"
    assert verdict(0.5, math.nextafter(0.5, 1), 0.5, 0.5) == "high_variance"


def test_regression_limits_are_a_tenth_of_the_target_std():
    """README: "for regression they are a fraction (0.1) of the training targets' standard deviation"."""
    spread = 50.0  # limit 5.0 target units
    d = diagnose(10.0, 10.0, human_error=10.0, task="regression", target_spread=spread)
    assert d.thresholds == {"bias": pytest.approx(5.0), "variance": pytest.approx(5.0), "unit": "target units"}
    r = lambda train, dev, human: diagnose(train, dev, human, "regression", target_spread=spread).diagnosis  # noqa: E731
    assert r(14.99, 14.99, 10.0) == "ok"
    assert r(15.01, 15.01, 10.0) == "high_bias"
    assert r(10.0, 14.99, 10.0) == "ok"
    assert r(10.0, 15.01, 10.0) == "high_variance"
    # a spread of 1 (standardized targets) makes the limit 0.1, not 0.02
    assert diagnose(0.5, 0.59, 0.5, "regression", target_spread=1.0).diagnosis == "ok"
    assert diagnose(0.5, 0.61, 0.5, "regression", target_spread=1.0).diagnosis == "high_variance"
    # no spread known: the fraction applies to a unit spread
    assert Thresholds().absolute("regression", None) == (pytest.approx(0.1), pytest.approx(0.1))


def test_explicit_thresholds_replace_the_default_each_on_its_own():
    assert Thresholds(bias=0.1).absolute("multiclass", None) == (0.1, 0.02)
    assert Thresholds(variance=0.1).absolute("multiclass", None) == (0.02, 0.1)
    assert Thresholds(bias=0.2, variance=0.3).absolute("regression", 10.0) == (pytest.approx(2.0), pytest.approx(3.0))
    assert Thresholds(bias=0.0).absolute("binary", 123.0) == (0.0, 0.02)  # 0 is allowed; the spread is ignored
    for bad in (-0.01, math.nan, math.inf):
        with pytest.raises(TunectlError, match=r"--bias-threshold .*>= 0, e\.g\. 0\.02"):
            Thresholds(bias=bad).absolute("multiclass", None)
        with pytest.raises(TunectlError, match=r"--variance-threshold .*>= 0"):
            Thresholds(variance=bad).absolute("regression", 1.0)


# ----------------------------------------------------------------------------- the data-curve rule


def _points(*devs: float) -> list[dict]:
    fractions = D.CURVE_FRACTIONS[-len(devs):]
    return [{"fraction": f, "n_train": int(1000 * f), "train_error": 0.0, "dev_error": d}
            for f, d in zip(fractions, devs)]


def test_the_data_curve_fractions_are_the_readmes():
    assert D.CURVE_FRACTIONS == (0.10, 0.25, 0.50, 1.00)


@pytest.mark.parametrize("devs, expected", [
    ((0.30, 0.20, 0.100, 0.090), "more_data_helps"),  # fell 0.010 > 0.02 / 4 from 50 % to 100 %
    ((0.30, 0.20, 0.100, 0.096), "flat"),  # fell 0.004 < 0.005
    ((0.30, 0.20, 0.100, 0.120), "flat"),  # rose
    ((0.30, 0.10, 0.100, 0.100), "flat"),  # flat at the end, however much it fell before
    ((math.nan, 0.30, math.nan, 0.20), "more_data_helps"),  # non-finite points are left out
])
def test_data_curve_verdict_each_answer(devs, expected):
    answer, text = data_curve_verdict(_points(*devs), 0.02)
    assert answer == expected
    assert ("more data would help" in text) == (expected == "more_data_helps")
    assert "of the training split" in text


def test_data_curve_verdict_boundary_is_a_quarter_of_the_variance_limit():
    tv = 0.04  # a quarter: 0.01
    assert data_curve_verdict(_points(0.2, 0.2 - 0.0101), tv)[0] == "more_data_helps"
    assert data_curve_verdict(_points(0.2, 0.2 - 0.0099), tv)[0] == "flat"
    a, b = _points(0.25, 0.20)
    assert data_curve_verdict([a, b], tv)[1].startswith(
        "dev error still falling from 50% → 100% of the training split (500 → 1000 examples): 0.25 → 0.2")


def test_data_curve_verdict_with_too_few_points():
    assert data_curve_verdict(_points(0.1), 0.02) == ("flat", "the data curve has too few finite points to say")
    assert data_curve_verdict(_points(math.nan, 0.1), 0.02)[0] == "flat"
    assert data_curve_verdict([], 0.02)[0] == "flat"


def test_diagnosis_uses_the_data_curve_with_the_variance_limit():
    """diagnose() passes the absolute variance limit: a drop of 0.006 helps at 0.02, not at 0.05."""
    curve = _points(0.2, 0.106, 0.100)
    d = diagnose(0.0, 0.1, data_curve=curve)
    assert d.data_verdict == "more_data_helps" and d.evidence[-1]["kind"] == "more_data_helps"
    d = diagnose(0.0, 0.1, data_curve=curve, thresholds=Thresholds(variance=0.05))
    assert d.data_verdict == "flat"
    assert "data_curve" not in diagnose(0.0, 0.1).to_dict()


# ----------------------------------------------------------------------------- the pruner


def _spy(monkeypatch, module, name: str) -> list[dict]:
    """Record the arguments each construction of module.name gets (bound to its signature)."""
    real = getattr(module, name)
    calls: list[dict] = []

    def spy(*args, **kwargs):
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(dict(bound.arguments))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_hyperband_from_three_epochs_to_the_spaces_epochs_reduction_3(monkeypatch):
    """README: "Hyperband by default, from 3 epochs to the space's `epochs`". Catches min_resource 3 -> 1,
    and a space of fewer than 9 epochs: from a third of them, so that one halving fits before the end."""
    calls = _spy(monkeypatch, optuna.pruners, "HyperbandPruner")
    pruner = make_pruner("hyperband", 12)
    assert type(pruner) is REAL['HyperbandPruner']
    assert len(calls) == 1
    assert (calls[0]["min_resource"], calls[0]["max_resource"], calls[0]["reduction_factor"]) == (3, 12, 3)
    for epochs, low in ((1, 1), (2, 1), (5, 1), (6, 2), (8, 2), (9, 3), (30, 3)):  # a third of fewer than 9
        make_pruner("hyperband", epochs)
        assert (calls[-1]["min_resource"], calls[-1]["max_resource"]) == (low, epochs)


def _hopeless_prune_epochs(pruner, epochs: int, n: int = 20) -> dict[int, int]:
    """Four good trials, then hopeless ones; the epoch at which each pruned trial was stopped."""
    study = optuna.create_study(pruner=pruner, study_name="pins")  # the name seeds Hyperband's brackets
    pruned: dict[int, int] = {}

    def objective(trial):
        hopeless = trial.number >= 4
        for epoch in range(1, epochs + 1):
            trial.report(0.9 if hopeless else 0.1 - 0.001 * trial.number, epoch)
            if trial.should_prune():
                pruned[trial.number] = epoch
                raise optuna.TrialPruned()
        return 0.1

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(objective, n_trials=n)
    return pruned


def test_hyperband_prunes_a_hopeless_trial_after_its_third_epoch():
    """Behaviour, not arguments: a hopeless trial runs 3 epochs, never fewer (a slow starter gets three),
    and the rungs are 3 and 9 (reduction factor 3); no good trial is pruned. With 6 epochs, from the second."""
    pruned = _hopeless_prune_epochs(make_pruner("hyperband", 12), 12)
    assert pruned and min(pruned.values()) == 3
    assert set(pruned.values()) <= {3, 9}
    assert all(n >= 4 for n in pruned)
    pruned = _hopeless_prune_epochs(make_pruner("hyperband", 6), 6)
    assert pruned and min(pruned.values()) == 2 and all(n >= 4 for n in pruned)


def test_halving_and_median_pruners(monkeypatch):
    halving = _spy(monkeypatch, optuna.pruners, "SuccessiveHalvingPruner")
    median = _spy(monkeypatch, optuna.pruners, "MedianPruner")
    assert type(make_pruner("halving", 12)) is REAL["SuccessiveHalvingPruner"]
    assert (halving[0]["min_resource"], halving[0]["reduction_factor"]) == (1, 3)
    assert type(make_pruner("median", 12)) is REAL["MedianPruner"]
    assert (median[0]["n_startup_trials"], median[0]["n_warmup_steps"]) == (5, 1)
    assert type(make_pruner("none", 12)) is optuna.pruners.NopPruner
    pruned = _hopeless_prune_epochs(make_pruner("halving", 12), 12)
    assert pruned and min(pruned.values()) == 1 and set(pruned.values()) <= {1, 3, 9}
    pruned = _hopeless_prune_epochs(make_pruner("median", 12), 12)
    # median: 5 start-up trials (0..4) are never pruned; n_warmup_steps=1 only holds back step 0, and
    # epochs are reported from 1: a hopeless trial is pruned after its first epoch
    assert pruned and min(pruned) == 5 and set(pruned.values()) == {1}
    assert _hopeless_prune_epochs(make_pruner("none", 12), 12) == {}
    assert set(PRUNERS) == {"hyperband", "halving", "median", "none"}
    with pytest.raises(TunectlError, match="--pruner 'asha': use one of hyperband, halving, median, none"):
        make_pruner("asha", 12)


# ----------------------------------------------------------------------------- the samplers

SPACE = {"epochs": 2, "params": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
                                 "width": {"type": "int", "low": 8, "high": 12}}}

CLASSES = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "qmc": "QMCSampler",
           "grid": "GridSampler"}


def _draws(sampler, n: int = 4) -> list[dict]:
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        t = study.ask()
        out.append({"lr": t.suggest_float("lr", 1e-3, 1e-1, log=True), "width": t.suggest_int("width", 8, 12)})
        study.tell(t, out[-1]["lr"])
    return out


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_is_the_named_class_and_seeded(monkeypatch, name):
    calls = _spy(monkeypatch, optuna.samplers, CLASSES[name])
    space = parse_space(SPACE if name != "grid" else
                        {"epochs": 2, "params": {"width": {"type": "int", "low": 8, "high": 12}}})
    sampler = make_sampler(name, 7, space, parallel=False)
    assert type(sampler) is REAL[CLASSES[name]]
    assert calls[0]["seed"] == 7
    if name == "grid":
        assert calls[0]["search_space"] == {"width": [8, 9, 10, 11, 12]}
        return
    # the seed is used: the same seed draws the same points, another seed others
    same = _draws(make_sampler(name, 7, space, parallel=False))
    assert _draws(sampler) == same
    assert _draws(make_sampler(name, 8, space, parallel=False)) != same


def test_tpe_is_multivariate_grouped_and_lies_only_in_parallel(monkeypatch):
    calls = _spy(monkeypatch, optuna.samplers, "TPESampler")
    space = parse_space(SPACE)
    make_sampler("tpe", 0, space, parallel=False)
    make_sampler("tpe", 0, space, parallel=True)
    assert [(c["multivariate"], c["group"], c["constant_liar"]) for c in calls] == [(True, True, False),
                                                                                    (True, True, True)]
    # tune.make_sampler: TPE's start-up stays 10 trials (bench/search_efficiency.py: 5 was no better)
    assert [c["n_startup_trials"] for c in calls] == [10, 10]
    with pytest.raises(TunectlError, match="--sampler 'bayes': use one of tpe, random, grid, cmaes, qmc"):
        make_sampler("bayes", 0, space, parallel=False)


# ----------------------------------------------------------------------------- device order


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"),  # CUDA first, even where MPS is there too
    (True, False, "cuda"),
    (False, True, "mps"),  # then Apple's MPS
    (False, False, "cpu"),  # then the CPU
])
def test_device_order_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.delenv("TUNECTL_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device() == torch.device(expected)
    # the override wins over every probe
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("TUNECTL_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")

