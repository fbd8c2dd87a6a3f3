"""Standard errors: the formulas against hand computations, what trials store, the "≈ best" mark in
show/--json/report, evaluate's SEs, and diagnose refusing to call a gap within noise variance."""

from __future__ import annotations

import functools
import json
import math
import shutil

import numpy as np
import pytest

import conftest
from conftest import ok_json
from tunectl import noise
from tunectl.diagnose import diagnose
from tunectl.results import mark_noise

invoke = functools.partial(conftest.invoke, env={"COLUMNS": "200"})


def test_binomial_se_is_the_hand_computed_one():
    # 40 errors in 400 examples, plus four: p = 42 / 404 = 0.103960...; sqrt(p (1 - p) / 404) = 0.015182...
    assert noise.binomial_se(0.1, 400) == pytest.approx(math.sqrt(42 / 404 * 362 / 404 / 404))
    assert noise.binomial_se(0.1, 400) == pytest.approx(0.015, abs=0.0002)  # about the textbook sqrt(e (1 - e) / n)
    # no error in 96: p = 2 / 100, sqrt(0.02 * 0.98 / 100) = 0.014 -- not 0 +- 0
    assert noise.binomial_se(0.0, 96) == pytest.approx(0.014)
    assert noise.binomial_se(0.5, 96) == pytest.approx(0.05)
    assert noise.binomial_se(None, 10) is None and noise.binomial_se(0.1, 0) is None
    assert noise.binomial_se(math.nan, 10) is None and noise.binomial_se(1.5, 10) is None


def test_bootstrap_rmse_se_matches_the_delta_method_and_is_seeded():
    rng = np.random.default_rng(3)
    sq = rng.normal(0, 2.0, size=2000) ** 2
    rmse = math.sqrt(sq.mean())
    # the delta method by hand: SE(MSE) = sd(sq)/sqrt(n); SE(sqrt(MSE)) = SE(MSE) / (2 sqrt(MSE))
    by_hand = sq.std(ddof=1) / math.sqrt(len(sq)) / (2 * rmse)
    got = noise.bootstrap_rmse_se(sq)
    assert got == pytest.approx(by_hand, rel=0.1)
    assert noise.bootstrap_rmse_se(sq) == got  # seeded: the same number every time
    assert noise.bootstrap_rmse_se(sq, scale=3.0) == pytest.approx(3 * got)  # in the target's units
    assert noise.bootstrap_rmse_se([1.0]) is None and noise.bootstrap_rmse_se([1.0, math.inf]) is None


def test_within_noise_and_the_dev_size_needed():
    # 0.10 vs 0.12, each ± 0.01: the difference's SE is sqrt(2) * 0.01 = 0.0141; 0.02 < 2 * 0.0141
    assert noise.within_noise(0.12, 0.10, 0.01, 0.01)
    assert not noise.within_noise(0.13, 0.10, 0.01, 0.01)  # 0.03 > 0.0283
    assert not noise.within_noise(0.12, 0.10, None, 0.01)  # unknown noise: no mark
    # a gap of 0.02 with a dev SE of 0.02 on 200 examples: 2 * 0.02 * sqrt(200 / n) <= 0.02 -> n = 800
    assert noise.dev_size_needed(0.02, 0.02, 200) == 800
    assert noise.dev_size_needed(0.02, 0.02, 200, se_train=0.011) is None  # train noise alone is too large


def test_mark_noise_marks_the_trials_within_two_standard_errors_of_the_best():
    board = [{"dev_error": 0.10, "dev_error_se": 0.01}, {"dev_error": 0.11, "dev_error_se": 0.01},
             {"dev_error": 0.20, "dev_error_se": 0.01}]
    mark_noise(board)
    assert [r["within_noise"] for r in board] == [False, True, False]


def test_diagnose_does_not_call_a_gap_within_noise_variance_and_says_how_much_dev_data_would_tell():
    # train 0.05, dev 0.09 on 100 dev examples: gap 0.04 > threshold 0.02, but the gap's SE is
    # about sqrt(0.09 * 0.91 / 100 + 0.05 * 0.95 / 600) = 0.03 (plus four: 0.0315), and 0.04 < 2 * 0.03
    dev_se, train_se = noise.binomial_se(0.09, 100), noise.binomial_se(0.05, 600)
    d = diagnose(0.05, 0.09, 0.0, dev_error_se=dev_se, train_error_se=train_se, n_dev=100)
    assert d.variance_se == pytest.approx(math.sqrt(dev_se ** 2 + train_se ** 2))
    assert d.diagnosis == "high_bias"  # the bias (0.05 > 0.02) stands; the variance is not called
    e = d.evidence[0]
    assert e["kind"] == "dev_too_small" and e["n_dev"] == 100
    assert e["dev_needed"] == noise.dev_size_needed(0.04, dev_se, 100, train_se) > 100
    assert "too small to tell" in e["text"] and f"{e['dev_needed']} examples" in e["text"]
    # the same numbers on a large dev set: variance
    big = diagnose(0.05, 0.09, 0.0, dev_error_se=noise.binomial_se(0.09, 10000),
                   train_error_se=noise.binomial_se(0.05, 60000), n_dev=10000)
    assert big.diagnosis == "high_bias_high_variance" and all(x["kind"] != "dev_too_small" for x in big.evidence)
    # and without standard errors the old rule holds
    assert diagnose(0.05, 0.09, 0.0).diagnosis == "high_bias_high_variance"


def test_show_json_report_and_evaluate_carry_standard_errors(tiny_study, tmp_path):
    shutil.copytree(tiny_study.root, tmp_path / "studies")
    root = tmp_path / "studies"
    shown = ok_json(invoke("show", tiny_study.name, "--root", root, "--json"))
    split = json.loads((tiny_study.folder / "split.json").read_text())["sizes"]
    for r in shown["leaderboard"]:
        assert r["dev_error_se"] == pytest.approx(noise.binomial_se(r["dev_error"], split["dev"]))
        # the train error is measured on the fixed training sample, as large as dev (at most 10,000)
        n_sample = min(split["dev"], split["train"], 10_000)
        assert r["train_error_se"] == pytest.approx(noise.binomial_se(r["train_error"], n_sample))
        assert isinstance(r["within_noise"], bool)
    assert shown["best"]["dev_error_se"] == shown["leaderboard"][0]["dev_error_se"]
    text = invoke("show", tiny_study.name, "--root", root).stdout
    best = shown["leaderboard"][0]
    assert f"{best['dev_error']:.4f} ± {best['dev_error_se']:.4f}" in text
    near = [r for r in shown["leaderboard"] if r["within_noise"]]
    assert ("≈ best" in text) == bool(near)
    r = ok_json(invoke("evaluate", tiny_study.name, "--root", root, "--json"))
    assert r["test_error_se"] == pytest.approx(noise.binomial_se(r["test_error"], split["test"]))
    assert r["dev_error_se"] == pytest.approx(noise.binomial_se(r["dev_error"], split["dev"]))
    looks = json.loads((root / tiny_study.name / "evaluations.json").read_text())
    assert looks[-1]["test_error_se"] == r["test_error_se"]
    assert invoke("report", tiny_study.name, "--root", root).exit_code == 0
    html = (root / tiny_study.name / "report.html").read_text()
    assert f"{best['dev_error']:.4f} ± {best['dev_error_se']:.4f}" in html


def test_a_regression_trial_stores_a_bootstrapped_se(tmp_path):
    (tmp_path / "r.yaml").write_text("dataset: diabetes\nepochs: 2\nparams:\n  lr: {type: float, low: 0.001, high: 0.01, "
                                     "log: true}\nfixed:\n  width: 8\n  depth: 1\n")
    ok_json(invoke("tune", "--space", tmp_path / "r.yaml", "--root", tmp_path / "s", "--trials", "1", "--study", "r",
                   "--pruner", "none", "--json"))
    from tunectl.results import open_study

    t = open_study("r", root=tmp_path / "s").get_trials()[0]
    u = t.user_attrs  # the dev error is the trial's value; its bootstrapped SE is stored (it cannot be rebuilt)
    # an RMSE's SE: positive, and much smaller than the RMSE itself on ~88 dev examples (the train error's
    # on the training sample, as large as dev)
    assert 0 < u["dev_error_se"] < t.value / 3 and 0 < u["train_error_se"] < u["train_error"] / 3
