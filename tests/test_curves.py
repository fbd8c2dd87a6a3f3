"""Learning curves that compare like with like (issue 15): each epoch's train error measured as dev
error is, in eval mode, on a fixed sample of the training split as large as the dev split.

Real runs only. The expected values are computed here by hand: the sample drawn from the split seed
as the issue defines it, the model's errors on it with torch directly. `--fast-curves` keeps the
running average; the run's final train error is the curve's best-epoch point.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from conftest import invoke, ok_json
from tunectl.config import TrainConfig
from tunectl.data import DataSettings, load_splits, make_splits
from tunectl.sources import Dataset
from tunectl.train import fit, train_sample

CPU = "cpu"


def sample_by_hand(splits) -> torch.Tensor:
    """min(dev, train, 10,000) training examples: a permutation seeded by the split seed, in index order."""
    n, k = len(splits.y_train), min(len(splits.y_dev), len(splits.y_train), 10_000)
    return torch.randperm(n, generator=torch.Generator().manual_seed(splits.manifest["seed"]))[:k].sort().values


def error_by_hand(model, x, y, task: str, y_scale: float = 1.0) -> float:
    """The model's error on (x, y), eval mode (dropout off): a rate, or the RMSE in the target's units."""
    model.eval()
    with torch.no_grad():
        out = model(x)
    if task == "regression":
        return math.sqrt(((out.squeeze(1) - y) ** 2).double().mean().item()) * y_scale
    pred = out.argmax(1) if task == "multiclass" else (out.squeeze(1) > 0).to(y.dtype)
    return (pred != y).double().mean().item()


def test_with_dropout_the_curve_is_the_eval_mode_error_on_the_sample_not_the_running_average(digits):
    """Dropout 0.5: the last epoch's train error (keep_last: the model is that epoch's) is the model's
    eval-mode error on the seeded sample, computed here; the running average with dropout on differs."""
    hist = fit(TrainConfig(epochs=3, width=32, dropout=0.5, lr=1e-3), digits, device=CPU, keep_last=True)
    rows = sample_by_hand(digits)
    assert torch.equal(train_sample(digits), rows) and hist.train_sample == len(rows) == len(digits.y_dev)
    last = hist.curve[-1]
    expected = error_by_hand(hist.model, digits.x_train[rows], digits.y_train[rows], "multiclass")
    assert last["train_error"] == pytest.approx(expected, abs=1e-12)
    assert last["train_error"] * len(rows) == pytest.approx(round(last["train_error"] * len(rows)))  # a count of the sample
    # the running average (dropout on, weights moving) is another number, higher with this much dropout
    assert last["running_error"] != last["train_error"]
    assert all(r["running_error"] > r["train_error"] for r in hist.curve), hist.curve
    # the run's final train error is the curve's point at the kept epoch: one measurement, not two
    assert hist.train_error == last["train_error"] and hist.best_epoch == 3


def test_the_final_train_error_is_the_best_epochs_point_and_its_se_the_samples(digits):
    from tunectl import noise

    hist = fit(TrainConfig(epochs=4, width=16, dropout=0.3, lr=3e-3), digits, device=CPU)
    best = hist.curve[hist.best_epoch - 1]
    assert hist.train_error == best["train_error"]
    rows = sample_by_hand(digits)
    assert hist.train_error == pytest.approx(error_by_hand(hist.model, digits.x_train[rows], digits.y_train[rows],
                                                           "multiclass"), abs=1e-12)
    assert hist.train_error_se == pytest.approx(noise.binomial_se(hist.train_error, len(rows)))


def _table_csv(tmp_path: Path) -> str:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(size=300)
    colour = rng.choice(["red", "green", "blue"], size=300)
    y = (a + (colour == "red") > 0.3).astype(int)
    lines = ["a,b,colour,y"] + [f"{a[i]:.6f},{b[i]:.6f},{colour[i]},{y[i]}" for i in range(300)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    return f"csv:{tmp_path / 't.csv'}"


BUILDER = """\
from torch import nn


def build(input_shape, out_dim):
    n = 1
    for s in input_shape:
        n *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(n, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, out_dim))
"""


@pytest.mark.parametrize("kind", ["regression", "table", "sequence", "user model"])
def test_every_kind_of_data_gets_the_eval_mode_curve(kind, tmp_path, monkeypatch):
    """Regression (RMSE in the target's units), a table (its preprocessing), a sequence read by a
    recurrent net, and the user's own model: the same measure, computed here by hand."""
    monkeypatch.chdir(tmp_path)
    cfg = {"epochs": 2, "dropout": 0.5, "width": 16}
    settings = DataSettings("diabetes")
    if kind == "table":
        settings = DataSettings.from_dict({}, dataset=_table_csv(tmp_path), target="y")
    elif kind == "sequence":
        settings = DataSettings.from_dict({}, dataset="digits", as_sequence=True)
        cfg = {"epochs": 2, "model": "rnn", "hidden": 8, "cell": "gru"}
    elif kind == "user model":
        (tmp_path / "net.py").write_text(BUILDER)
        settings = DataSettings("iris")
        cfg = {"epochs": 2, "model": f"{tmp_path / 'net.py'}:build"}
    splits = load_splits(settings)
    from tunectl.config import from_dict

    hist = fit(from_dict(cfg), splits, device=CPU, keep_last=True)
    rows = sample_by_hand(splits)
    assert hist.train_sample == len(rows) == min(len(splits.y_dev), len(splits.y_train), 10_000)
    expected = error_by_hand(hist.model, splits.x_train[rows], splits.y_train[rows], splits.task, splits.y_scale)
    assert hist.curve[-1]["train_error"] == pytest.approx(expected, rel=1e-6)
    assert hist.train_error == hist.curve[-1]["train_error"]


def _splits(n: int, split: tuple[float, float, float]):
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(n, 3)), dtype=torch.float32)
    y = torch.tensor((x[:, 0] > 0).numpy().astype(np.int64))
    return make_splits(Dataset(x, y, "binary", "synthetic", ["no", "yes"]), ratios=split, seed=7)


@pytest.mark.parametrize("n, split, limited_by", [
    (200, (0.6, 0.2, 0.2), "dev"),
    (200, (0.2, 0.6, 0.2), "train"),
    (60_000, (0.6, 0.2, 0.2), "the cap"),  # dev 12,000: the sample stops at 10,000
])
def test_the_sample_is_min_dev_train_10000_and_drawn_from_the_split_seed(n, split, limited_by):
    s = _splits(n, split)
    n_train, n_dev = len(s.y_train), len(s.y_dev)
    want = {"dev": n_dev, "train": n_train, "the cap": 10_000}[limited_by]
    assert want == min(n_dev, n_train, 10_000)
    rows = train_sample(s)
    assert len(rows) == want and torch.equal(rows, sample_by_hand(s))
    assert len(set(rows.tolist())) == want and rows.max() < n_train
    assert torch.equal(train_sample(s), rows)  # the same every time: chosen from the split seed alone
    if limited_by == "the cap":  # a real epoch there too: the row is a rate over the 10,000
        hist = fit(TrainConfig(epochs=1, width=4, depth=1, batch_size=0), s, device=CPU)
        assert hist.train_sample == 10_000
        assert hist.curve[0]["train_error"] * 10_000 == pytest.approx(round(hist.curve[0]["train_error"] * 10_000))


def test_fast_curves_restores_the_running_average_and_trains_the_same_model(digits):
    """fast_curves only changes what the curve measures: the same seed trains the same weights (the
    eval pass draws no random numbers), so dev curves agree to the bit, the fast run's train curve is
    the other's running average, and the final train error is the eval-mode one either way."""
    cfg = TrainConfig(epochs=3, width=32, dropout=0.5, lr=1e-3)
    eval_run, fast = fit(cfg, digits, device=CPU), fit(cfg.replace(fast_curves=True), digits, device=CPU)
    assert [r["dev_error"] for r in fast.curve] == [r["dev_error"] for r in eval_run.curve]
    assert [r["train_loss"] for r in fast.curve] == [r["train_loss"] for r in eval_run.curve]
    assert [r["train_error"] for r in fast.curve] == [r["running_error"] for r in eval_run.curve]
    assert [r["train_error"] for r in fast.curve] != [r["train_error"] for r in eval_run.curve]
    assert fast.train_error == eval_run.train_error and fast.to_dict()["train_curve"] == "running"


def test_fast_curves_from_the_cli_is_recorded_and_its_help_says_what_it_costs(tmp_path):
    out = tmp_path / "run"
    doc = ok_json(invoke("train", "-d", "iris", "--epochs", "2", "--fast-curves", "--device", "cpu", "--json",
                         "--out", out))
    assert doc["train_curve"] == "running"
    assert all(r["train_error"] == r["running_error"] for r in doc["history"])
    assert "fast_curves: true" in (out / "config.yaml").read_text()
    assert json.loads((out / "history.json").read_text())["config"]["fast_curves"] is True
    again = ok_json(invoke("train", "--params", out / "config.yaml", "--device", "cpu", "--json", "--out", tmp_path / "b"))
    no_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert again["train_curve"] == "running" and no_time(again["history"]) == no_time(doc["history"])
    helps = [invoke(cmd, "--help", env={"COLUMNS": "300"}).stdout for cmd in ("train", "tune")]
    assert all("--fast-curves" in h and "running average" in h and "dev evaluation" in h for h in helps)


SPACE = """\
model: mlp
dataset: iris
epochs: 3
params:
  width: {type: int, low: 4, high: 32}
  dropout: {type: float, low: 0.0, high: 0.5}
"""


def test_every_trial_of_a_study_measures_the_same_sample(tmp_path, monkeypatch):
    """Two trials with other weights: each one's recorded train error is its own checkpoint's eval-mode
    error on the one sample computed here; the user attribute counts wrong examples of that sample."""
    from tunectl.models import load_checkpoint, model_from_checkpoint
    from tunectl.results import open_study, trial_records

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(SPACE)
    ok_json(invoke("tune", "--space", "s.yaml", "--study", "s", "--trials", "3", "--pruner", "none", "--json",
                   "--device", "cpu"))
    study = open_study("s", root="studies")
    splits = load_splits(DataSettings("iris"))
    rows = sample_by_hand(splits)
    seen = 0
    for r in trial_records(study, Path("studies/s")):
        t = study.trials[r["number"]]
        assert t.user_attrs["train_errors"]["of"] == len(rows) == len(splits.y_dev)
        assert t.user_attrs["train_errors"]["wrong"][-1] / len(rows) == r["curve"][-1]["train_error"]
        if r["checkpoint"]:
            model, _ = model_from_checkpoint(load_checkpoint(Path("studies/s") / r["checkpoint"]))
            assert r["train_error"] == pytest.approx(
                error_by_hand(model, splits.x_train[rows], splits.y_train[rows], "multiclass"), abs=1e-12)
            assert r["train_error"] == r["curve"][r["best_epoch"] - 1]["train_error"]
            seen += 1
    assert seen >= 2
    # the study records how its curves are measured; a resume must measure them alike
    result = invoke("tune", "--space", "s.yaml", "--study", "s", "--trials", "4", "--fast-curves", "--device", "cpu")
    assert result.exit_code == 2 and "--fast-curves" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert len(open_study("s", root="studies").trials) == 3


def test_diagnose_reads_the_eval_curve_a_weak_trials_ends_near_its_train_error(tmp_path):
    """The issue's example: a weak model with heavy dropout, whose running average sat above its dev
    curve. The curve diagnose shows now ends at the run's train error, at or below dev error."""
    out = tmp_path / "weak"
    doc = ok_json(invoke("train", "-d", "digits", "--epochs", "3", "--set", "width=16", "--set", "dropout=0.5",
                         "--set", "lr=1e-3", "--device", "cpu", "--json", "--out", out))
    last = doc["history"][-1]
    assert last["running_error"] > last["dev_error"]  # what the old curve showed: train above dev
    d = ok_json(invoke("diagnose", out, "--json"))
    assert [r["train_error"] for r in d["curve"]] == [r["train_error"] for r in doc["history"]]
    assert d["curve"][doc["best_epoch"] - 1]["train_error"] == d["train_error"] == doc["train_error"]
    assert d["curve"][-1]["train_error"] < last["running_error"]
    se = math.hypot(doc["train_error_se"], doc["dev_error_se"])
    assert d["curve"][-1]["train_error"] <= last["dev_error"] + 2 * se


def test_the_reports_curves_name_a_running_average_as_such():
    """A trial run with --fast-curves is drawn as 'train (running)' in the report's figure and its PNG
    legend; an eval-mode one as 'train'."""
    from tunectl import figures

    curve = [{"epoch": 1, "train_error": 0.3, "dev_error": 0.2}, {"epoch": 2, "train_error": 0.2, "dev_error": 0.1}]
    board = [{"number": 0, "dev_error": 0.1, "best_epoch": 2, "curve": curve, "config": {"fast_curves": False}},
             {"number": 1, "dev_error": 0.1, "best_epoch": 2, "curve": curve, "config": {"fast_curves": True}}]
    names = [t.name for t in figures.curves(board, "error rate").data]
    assert names == ["trial 0 train", "trial 0 dev", "trial 1 train (running)", "trial 1 dev"]


def test_bad_fast_curves_inputs_are_one_line_exit_2_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("fast_curves: 3\n")
    (tmp_path / "s.yaml").write_text("dataset: iris\nepochs: 1\nparams:\n  fast_curves: {type: categorical, "
                                     "choices: [true, false]}\n")
    cases = [
        (("train", "-d", "iris", "--epochs", "1", "--fast-curves=maybe"), "does not take a value"),
        (("train", "-d", "iris", "--epochs", "1", "--set", "fast_curves=maybe"), "fast_curves: expected true or false"),
        (("train", "-d", "iris", "--epochs", "1", "--params", "p.yaml"), "fast_curves: expected true or false, got 3"),
        (("tune", "--space", "s.yaml", "--trials", "1"), "params.fast_curves: cannot be searched"),
    ]
    for args, text in cases:
        result = invoke(*args)
        assert result.exit_code == 2 and text in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml", "s.yaml"]  # no run folder, no study
