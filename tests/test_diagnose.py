"""`tunectl diagnose`: the verdict table, curve evidence, real runs that are biased or overfit,
the data curve, actions in the study's own parameters, and a next search space that runs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from conftest import invoke, ok_json
from tunectl.diagnose import Thresholds, curve_evidence, diagnose
from tunectl.report import diagnosis_panel
from tunectl.space import load_space

DESIGN_KEYS = {"train_error", "dev_error", "human_error", "avoidable_bias", "variance", "diagnosis", "actions"}


def texts(doc: dict) -> str:
    return "\n".join(a["text"] for a in doc["actions"])


# ----------------------------------------------------------------------------- the numbers and the verdict


@pytest.mark.parametrize("train, dev, expected", [
    (0.01, 0.11, "high_variance"),
    (0.15, 0.16, "high_bias"),
    (0.15, 0.30, "high_bias_high_variance"),
    (0.005, 0.01, "ok"),
])
def test_the_textbook_table(train, dev, expected):
    d = diagnose(train, dev, human_error=0.0, task="multiclass")
    assert d.diagnosis == expected
    assert d.avoidable_bias == pytest.approx(train) and d.variance == pytest.approx(dev - train)


def test_thresholds_are_adjustable_and_relative_to_the_spread_for_regression():
    assert diagnose(0.01, 0.11, thresholds=Thresholds(variance=0.2)).diagnosis == "ok"
    assert diagnose(0.15, 0.16, thresholds=Thresholds(bias=0.2)).diagnosis == "ok"
    # regression: RMSE in target units, thresholds a share (default 10 %) of the targets' std (here 50 -> 5)
    d = diagnose(40.0, 52.0, human_error=38.0, task="regression", target_spread=50.0)
    assert d.diagnosis == "high_variance" and d.thresholds["bias"] == pytest.approx(5.0)
    assert diagnose(40.0, 52.0, human_error=30.0, task="regression", target_spread=50.0).diagnosis == \
        "high_bias_high_variance"
    assert diagnose(40.0, 52.0, 38.0, "regression", target_spread=200.0).diagnosis == "ok"


def rows(train_loss, dev_error):
    return [{"epoch": i + 1, "train_loss": tl, "train_error": tl / 3, "dev_error": de}
            for i, (tl, de) in enumerate(zip(train_loss, dev_error))]


def test_curve_evidence():
    kinds = lambda c: {e["kind"]: e.get("epoch") for e in curve_evidence(c, 0.002)}  # noqa: E731
    falling = rows([2.0, 1.0, 0.6, 0.4, 0.3, 0.25], [0.5, 0.3, 0.2, 0.15, 0.12, 0.10])
    assert kinds(falling) == {"still_improving": 6}
    overfit = rows([2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02], [0.5, 0.2, 0.1, 0.12, 0.14, 0.15, 0.16])
    assert kinds(overfit) == {"overfitting": 3}
    flat = rows([2.30, 2.30, 2.29, 2.30], [0.9, 0.9, 0.9, 0.9])
    assert "flat_loss" in kinds(flat)
    diverged = rows([2.0, 1.5], [0.5, 0.4]) + [{"epoch": 3, "train_loss": None, "train_error": None, "dev_error": None}]
    assert kinds(diverged)["diverged"] == 3


def test_actions_for_a_flat_or_diverged_loss_name_the_learning_rate():
    flat = rows([2.30, 2.30, 2.30], [0.9, 0.9, 0.9])
    d = diagnose(0.9, 0.9, curve=flat, config={"lr": 1e-5})
    assert d.actions[0]["param"] == "lr" and "lr 1e-05" in d.actions[0]["text"]


def test_panel_renders_numbers_bars_curve_and_actions():
    d = diagnose(0.15, 0.30, config={"width": 32, "depth": 2}, image=True,
                 curve=rows([2.0, 1.0, 0.7, 0.6], [0.5, 0.4, 0.35, 0.30])).to_dict()
    d["source"] = {"run": "somewhere"}
    out = io.StringIO()
    diagnosis_panel(Console(file=out, width=100), d)
    text = out.getvalue()
    assert "high bias and high variance" in text and "█" in text and "▁" in text
    assert "width 32 → try 64–256" in text and "model mlp → cnn" in text and "then, once bias is down" in text


# ----------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A deliberately tiny network: one hidden layer of two units, three epochs."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    r = invoke("train", "--dataset", "digits", "--set", "depth=1", "--set", "width=2", "--epochs", "3",
               "--device", "cpu", "--json", "--out", out)
    assert r.exit_code == 0, r.stderr
    return out


def test_a_tiny_network_has_high_bias(tiny_run):
    doc = ok_json(invoke("diagnose", tiny_run, "--json"))
    assert DESIGN_KEYS <= set(doc) and "data_curve" not in doc
    assert doc["diagnosis"] == "high_bias" and doc["avoidable_bias"] > 0.3
    assert doc["source"] == {"run": str(tiny_run)}
    # the actions are this run's own parameters and values: a bigger network, longer training, a ConvNet
    assert "width 2 → try 4–16" in texts(doc) and "depth 1 → try 2–3" in texts(doc)
    assert "epochs 3 → 6" in texts(doc) and "model mlp → cnn" in texts(doc)
    assert {a["param"] for a in doc["actions"]} >= {"width", "depth", "epochs", "model"}


def test_a_big_unregularized_network_on_little_data_has_high_variance(tmp_path):
    out = tmp_path / "big"
    r = invoke("train", "--dataset", "digits", "--set", "depth=2", "--set", "width=256", "--epochs", "10",
               "--set", "lr=3e-3", "--train-fraction", "0.1", "--device", "cpu", "--json", "--out", out)
    assert r.exit_code == 0, r.stderr
    doc = ok_json(invoke("diagnose", out, "--json"))
    assert doc["diagnosis"] == "high_variance", doc
    assert doc["train_error"] < 0.02 and doc["variance"] > 0.05
    acts = texts(doc)
    assert "dropout 0 → try 0.1–0.5" in acts and "weight_decay 0 → try 1e-05–0.01" in acts
    assert "augment none" in acts and "--data-curve" in acts
    # from a run folder, the next space is built around its config and holds the rest of it fixed
    nxt = tmp_path / "next.yaml"
    ok_json(invoke("diagnose", out, "--next-space", nxt, "--json"))
    sp = load_space(nxt)
    assert sp.fixed["width"] == 256 and "depth" not in sp.fixed and sp.epochs == 10  # depth 2 is the default
    assert sp.params["dropout"] == {"type": "float", "low": 0.1, "high": 0.5}
    assert sp.params["weight_decay"]["log"] and sp.params["augment"]["choices"] == ["light", "strong"]
    assert "# dropout: 0 (not searched) → 0.1–0.5: regularization" in nxt.read_text()


def test_the_data_curve_on_a_real_run(tiny_run):
    doc = ok_json(invoke("diagnose", tiny_run, "--data-curve", "--device", "cpu", "--json"))
    curve = doc["data_curve"]
    assert [p["fraction"] for p in curve] == [0.1, 0.25, 0.5, 1.0]
    sizes = [p["n_train"] for p in curve]
    assert sizes == sorted(sizes) and sizes[0] < 0.12 * sizes[-1]
    assert all(0 <= p["train_error"] <= 1 and 0 <= p["dev_error"] <= 1 and p["epochs"] == 3 for p in curve)
    assert doc["data_verdict"] in ("more_data_helps", "flat")
    assert any(e["kind"] == doc["data_verdict"] for e in doc["evidence"])


# ----------------------------------------------------------------------------- studies


@pytest.mark.slow
def test_a_study_diagnosis_names_its_parameters_and_its_next_space_runs(tiny_study, tmp_path):
    best = tiny_study.tuned["best"]
    out = tmp_path / "next.yaml"
    doc = ok_json(invoke("diagnose", tiny_study.name, "--root", tiny_study.root, "--next-space", out, "--json"))
    assert doc["source"]["study"] == tiny_study.name and doc["source"]["trial"] == best["number"]
    assert doc["diagnosis"] == "high_bias" and doc["next_space"] == str(out)
    w = best["params"]["width"]
    assert f"width {w} → try {2 * w}–{8 * w} (searched 2–4)" in texts(doc)
    # the file explains each change at the top, loads as a space, and runs as a study
    text = out.read_text()
    assert text.startswith("# next search space") and "# width: 2–4 → " in text and "# epochs: 2 → 4" in text
    sp = load_space(out)
    assert sp.epochs == 4 and sp.params["width"]["high"] == 8 * w and "depth" in sp.params and "depth" not in sp.fixed
    # the next study goes under this test's own root: the shared study's root is read only
    r = invoke("tune", "--space", out, "--study", "next", "--root", tmp_path / "studies", "--trials", "1",
               "--epochs", "1", "--pruner", "none", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["states"]["COMPLETE"] == 1


@pytest.mark.slow
def test_study_wide_verdicts_in_show_and_diagnose_all(tiny_study):
    name, root = tiny_study.name, tiny_study.root
    doc = ok_json(invoke("diagnose", name, "--root", root, "--all", "--json"))
    assert doc["n_complete"] == 3 and doc["counts"]["high_bias"] == 3 and doc["bias_limited"] == 3
    assert {t["number"] for t in doc["trials"]} == {0, 1, 2}
    shown = ok_json(invoke("show", name, "--root", root, "--json"))
    assert shown["verdicts"] == {"0": "high_bias", "1": "high_bias", "2": "high_bias"}
    table = invoke("show", name, "--root", root)
    assert table.exit_code == 0 and "diagnosis" in table.stdout and "bias" in table.stdout
    one = ok_json(invoke("diagnose", name, "--root", root, "--trial", "1", "--json"))
    assert one["source"]["trial"] == 1 and one["curve"] and len(one["curve"]) == 2
    missing = invoke("diagnose", name, "--trial", "99", "--root", root)
    assert missing.exit_code == 2 and "has no trial 99" in missing.stderr


@pytest.mark.parametrize("args, message", [
    (["nope"], "neither a run folder"),
    (["tiny", "--bias-threshold", "-1"], "--bias-threshold"),
    (["tiny", "--all", "--data-curve"], "--all"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    r = invoke("diagnose", *args, "--root", tmp_path)
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_folder_that_is_no_run_is_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    r = invoke("diagnose", tmp_path / "empty", "--root", tmp_path)
    assert r.exit_code == 2 and "neither a run folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1
