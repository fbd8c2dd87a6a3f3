"""`tunectl train` through Typer's CliRunner: JSON contract, run folder, reproduction, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import invoke, ok_json
from tunectl.data import DataSettings, load_splits, same_split
from tunectl.models import load_checkpoint, model_from_checkpoint
from tunectl.train import evaluate

RUN_FILES = {"config.yaml", "history.json", "model.pt", "split.json"}
JSON_KEYS = {"train_error", "dev_error", "epochs", "epoch_seconds", "history", "out"}
ROW_KEYS = {"epoch", "train_loss", "train_error", "dev_loss", "dev_error"}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits-run"
    result = invoke("train", "--dataset", "digits", "--epochs", "3", "--set", "width=32", "--device", "cpu",
                    "--json", "--out", out)
    return ok_json(result), out


def test_train_json_has_the_design_keys(digits_run):
    doc, out = digits_run
    assert JSON_KEYS <= set(doc)
    assert doc["epochs"] == 3 and len(doc["history"]) == 3 and doc["out"] == str(out)
    assert [r["epoch"] for r in doc["history"]] == [1, 2, 3]
    assert all(ROW_KEYS <= set(r) for r in doc["history"])
    assert doc["epoch_seconds"] > 0
    # train and dev error are those of the saved weights, computed here on the same split (not a 0..1 band)
    from tunectl.models import load_checkpoint, model_from_checkpoint

    model, _ = model_from_checkpoint(load_checkpoint(out / "model.pt"))
    splits = load_splits(DataSettings("digits"))
    # the train error is measured on a fixed sample of the training split as large as dev (seeded by the split)
    k = min(len(splits.y_dev), len(splits.y_train), 10_000)
    rows = torch.randperm(len(splits.y_train), generator=torch.Generator().manual_seed(splits.manifest["seed"]))[:k]
    with torch.no_grad():
        errs = [(model.eval()(x).argmax(1) != y).float().mean().item()
                for x, y in ((splits.x_train[rows], splits.y_train[rows]), (splits.x_dev, splits.y_dev))]
    assert (doc["train_error"], doc["dev_error"]) == (pytest.approx(errs[0], abs=1e-6), pytest.approx(errs[1], abs=1e-6))
    assert doc["dev_error"] == min(r["dev_error"] for r in doc["history"])


def test_train_writes_the_run_folder(digits_run):
    doc, out = digits_run
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["epochs"] == 3 and config["width"] == 32 and config["data"]["dataset"] == "digits"
    history = json.loads((out / "history.json").read_text())
    assert history["history"] == doc["history"] and history["task"] == "multiclass"
    manifest = json.loads((out / "split.json").read_text())
    splits = load_splits(DataSettings("digits"))
    assert same_split(manifest, splits.manifest)
    # model.pt holds the best epoch's weights: evaluated again, it gives the reported dev error
    model, cfg = model_from_checkpoint(load_checkpoint(out / "model.pt"))
    assert cfg.width == 32
    assert evaluate(model, splits.x_dev, splits.y_dev, "multiclass")["error"] == pytest.approx(doc["dev_error"])


def test_params_file_reproduces_the_run(digits_run, tmp_path):
    doc, out = digits_run
    again = ok_json(invoke("train", "--params", out / "config.yaml", "--device", "cpu", "--json",
                           "--out", tmp_path / "again"))
    assert again["dev_error"] == doc["dev_error"] and again["train_error"] == doc["train_error"]
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(again["history"]) == strip(doc["history"])
    assert json.loads((tmp_path / "again" / "split.json").read_text())["hashes"] == json.loads(
        (out / "split.json").read_text())["hashes"]


def test_flags_override_the_params_file(digits_run, tmp_path):
    _, out = digits_run
    doc = ok_json(invoke("train", "--params", out / "config.yaml", "--epochs", "1", "--set", "width=8",
                         "--json", "--out", tmp_path / "r"))
    assert doc["epochs"] == 1
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["width"] == 8


def test_acceptance_digits_20_epochs_defaults(tmp_path):
    """The issue's acceptance check: `tunectl train --dataset digits --epochs 20 --json` -> dev_error < 0.05."""
    doc = ok_json(invoke("train", "--dataset", "digits", "--epochs", "20", "--json", "--out", tmp_path / "run"))
    assert doc["epochs"] == 20 and doc["dev_error"] < 0.05, doc["dev_error"]


def test_default_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = ok_json(invoke("train", "--dataset", "iris", "--epochs", "1", "--json"))
    out = Path(doc["out"])
    assert out.parent == Path("studies/runs") and out.name.startswith("iris-mlp-")
    assert RUN_FILES <= {p.name for p in (tmp_path / out).iterdir()}


def test_human_output(tmp_path):
    result = invoke("train", "--dataset", "iris", "--epochs", "2", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.stderr
    assert "dev error" in result.stdout and str(tmp_path / "r") in result.stdout.replace("\n", "")


def test_split_and_train_fraction_reach_the_manifest(tmp_path):
    doc = ok_json(invoke("train", "--dataset", "digits", "--epochs", "1", "--split", "0.8,0.1,0.1",
                         "--train-fraction", "0.5", "--json", "--out", tmp_path / "r"))
    manifest = json.loads((Path(doc["out"]) / "split.json").read_text())
    assert manifest["sizes"] == {"train": 1437, "dev": 180, "test": 180}
    assert manifest["train_used"] == round(0.5 * 1437) and manifest["ratios"] == [0.8, 0.1, 0.1]


def test_csv_regression_through_the_cli(tmp_path):
    rows = ["a,b,price"] + [f"{i % 7},{i % 5},{3 * (i % 7) - 2 * (i % 5) + 0.5}" for i in range(100)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    doc = ok_json(invoke("train", "--dataset", f"csv:{tmp_path / 'd.csv'}", "--target", "price", "--epochs", "30",
                         "--set", "lr=1e-2", "--set", "batch_size=16", "--json", "--out", tmp_path / "r"))
    assert json.loads((tmp_path / "r" / "history.json").read_text())["task"] == "regression"
    assert doc["dev_error"] < 1.5  # RMSE in price units; the prices spread over ~20


def test_divergence_is_reported_not_raised(tmp_path):
    result = invoke("train", "--dataset", "diabetes", "--set", "optimizer=sgd", "--set", "lr=1e6", "--epochs", "3",
                    "--json", "--out", tmp_path / "r")
    doc = ok_json(result)
    assert "NaN" not in result.stdout  # valid JSON: null, not NaN
    assert doc["status"] == "diverged" and doc["dev_error"] is None and doc["history"][0]["train_loss"] is None
    assert not (tmp_path / "r" / "model.pt").exists() and (tmp_path / "r" / "history.json").exists()


BAD_INPUT = [
    (["--dataset", "nope"], "unknown data set 'nope'"),
    (["--dataset", "csv:{tmp}/missing.csv", "--target", "y"], "no such file"),
    (["--dataset", "csv:{tmp}/d.csv", "--target", "nope"], "no column 'nope'"),
    (["--dataset", "npz:{tmp}/missing.npz"], "no such file"),
    (["--dataset", "mnist", "--data-dir", "{tmp}/empty"], "--download"),
    (["--dataset", "folder:{tmp}/no-images"], "no such folder"),
    (["--set", "lrr=0.1"], "did you mean 'lr'"),
    (["--set", "lr=fast"], "lr: expected float"),
    (["--set", "depth=2.5"], "depth: expected int"),
    (["--set", "dropout=1.5"], "dropout=1.5"),
    (["--set", "lr"], "expected key=value"),
    (["--model", "gan"], "model: 'gan' is not one of"),
    (["--split", "0.5,0.2,0.2"], "sum to 0.9, not 1"),
    (["--split", "0.8,0.2"], "three positive fractions"),
    (["--train-fraction", "0"], "--train-fraction"),
    (["--dataset", "iris", "--task", "regression"], "class names"),
    (["--dataset", "iris", "--task", "ranking"], "--task 'ranking'"),
    (["--dataset", "iris", "--model", "cnn"], "needs image data"),
    (["--params", "{tmp}/missing.yaml"], "no such file"),
    (["--params", "{tmp}/bad.yaml"], "unknown hyperparameter 'lrr'"),
]


def _case_id(case) -> str:
    args = case.values[0] if hasattr(case, "values") else case[0]
    return " ".join(args)


@pytest.mark.parametrize("args, message", BAD_INPUT, ids=[_case_id(c) for c in BAD_INPUT])
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,1\n5,0\n")
    (tmp_path / "bad.yaml").write_text("lrr: 0.1\n")
    out = tmp_path / "run"
    result = invoke("train", *[a.format(tmp=tmp_path) for a in args], "--epochs", "1", "--out", out)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert not out.exists() and not (tmp_path / "studies").exists()  # no run folder for a run that never started


def test_missing_torchvision_files_name_the_folder(tmp_path):
    result = invoke("train", "--dataset", "fashion_mnist", "--data-dir", tmp_path / "fm", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert str((tmp_path / "fm").resolve()) in result.stderr and "--download" in result.stderr


HEAVY = ("torch", "torchvision", "sklearn", "optuna", "matplotlib")


def test_help_does_not_import_heavy_modules():
    code = f"""
import sys
from typer.testing import CliRunner
from tunectl.cli import app, main
for args in (["--help"], ["train", "--help"]):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "Usage" in r.stdout, (args, r.stdout, r.stderr)
sys.argv = ["tunectl", "--help"]  # the console script's own path
try:
    main()
except SystemExit as e:
    assert e.code in (0, None), e.code
print("HEAVY:" + ",".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY:", proc.stdout
