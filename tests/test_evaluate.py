"""`tunectl evaluate` and `tunectl export` on a small real study: the recorded look at the test set,
refit, the export round trip, checkpoint retention, and refusal of planted checkpoint files."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import invoke, ok_json, Planted
from tunectl.data import DataSettings, load_splits
from tunectl.models import load_checkpoint, model_from_checkpoint
from tunectl.train import evaluate
from tunectl.results import checkpoint_path, open_study, trial_records

SPACE = """
model: mlp
dataset: digits
epochs: 2
params:
  lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}
fixed:
  depth: 1
  width: 16
"""
N_TRIALS = 4


@pytest.fixture(scope="module")
def study_root(tmp_path_factory) -> Path:
    """A finished study 's' of four complete trials (no pruning), under its own root."""
    tmp = tmp_path_factory.mktemp("study")
    (tmp / "space.yaml").write_text(SPACE)
    doc = ok_json(invoke("tune", "--space", tmp / "space.yaml", "--study", "s", "--root", tmp / "studies",
                         "--trials", N_TRIALS, "--pruner", "none", "--device", "cpu", "--json"))
    assert doc["states"]["COMPLETE"] == N_TRIALS
    return tmp / "studies"


@pytest.fixture
def root(study_root, tmp_path) -> Path:
    """A private copy of the study: each test makes its own looks at the test set."""
    return Path(shutil.copytree(study_root, tmp_path / "studies"))


def records(root: Path) -> list[dict]:
    return sorted(trial_records(open_study("s", None, root)), key=lambda r: r["number"])


def ranked(root: Path) -> list[dict]:
    return sorted((r for r in records(root) if r["state"] == "COMPLETE"), key=lambda r: (r["value"], r["number"]))


# ----------------------------------------------------------------------------- checkpoints


def test_only_the_best_three_trials_keep_their_weights(study_root):
    best = ranked(study_root)
    files = [p for p in (study_root / "s" / "artifacts").iterdir() if p.is_file()]
    assert len(files) == min(3, len(best)) == 3
    kept = {r["number"]: checkpoint_path(study_root / "s", r) for r in best}
    assert [n for n, p in kept.items() if p is not None] == [r["number"] for r in best[:3]]
    assert sorted(p.resolve() for p in kept.values() if p) == sorted(p.resolve() for p in files)
    for r in best[:3]:  # each kept file is that trial's model at its best epoch
        ckpt = load_checkpoint(kept[r["number"]])
        assert ckpt["trial"] == r["number"] and ckpt["best_epoch"] == r["best_epoch"]


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_records_every_look_and_warns_the_second_time(root):
    best = ranked(root)[0]
    first = ok_json(invoke("evaluate", "s", "--root", root, "--device", "cpu", "--json"))
    assert {"test_error", "dev_error", "train_error", "trial", "evaluated_before", "refit"} <= set(first)
    assert first["trial"] == best["number"] and first["refit"] is False and first["evaluated_before"] is False
    # the kept weights give back the trial's own dev and train error; the test error is new
    assert first["dev_error"] == best["value"]
    assert first["train_error"] == pytest.approx(best["train_error"], abs=1e-6)
    assert first["sizes"]["test"] == 359
    # the test error is that of the kept weights on the test split, computed here
    splits = load_splits(DataSettings("digits"), include_test=True)
    model, _ = model_from_checkpoint(load_checkpoint(checkpoint_path(root / "s", best)))
    assert first["test_error"] == pytest.approx(evaluate(model, *splits.test, "multiclass")["error"], abs=1e-12)
    looks = json.loads((root / "s" / "evaluations.json").read_text())
    assert len(looks) == 1 and {"time", "trial", "refit", "test_error", "dev_error", "train_error"} <= set(looks[0])

    second = invoke("evaluate", "s", "--root", root, "--device", "cpu")
    assert second.exit_code == 0, second.stderr
    text = " ".join(second.stdout.split())
    assert "test error rate" in text and "no longer an unbiased estimate" in text
    third = ok_json(invoke("evaluate", "s", "--root", root, "--device", "cpu", "--json"))
    assert third["evaluated_before"] is True and "no longer an unbiased" in third["warning"]
    assert third["test_error"] == first["test_error"]
    assert len(json.loads((root / "s" / "evaluations.json").read_text())) == 3


def test_a_trial_without_weights_is_refused_with_the_way_out(root):
    dropped = ranked(root)[-1]["number"]
    result = invoke("evaluate", "s", "--trial", dropped, "--root", root)
    assert result.exit_code == 2
    assert "kept no weights" in result.stderr and "--refit" in result.stderr
    assert not (root / "s" / "evaluations.json").exists()  # a refused look is no look
    assert invoke("evaluate", "s", "--trial", 99, "--root", root).exit_code == 2


def test_refit_trains_on_train_plus_dev_for_the_best_epoch_count(root):
    rec = ranked(root)[-1]  # no kept weights: --refit retrains it
    doc = ok_json(invoke("evaluate", "s", "--trial", rec["number"], "--refit", "--root", root, "--device", "cpu",
                         "--json"))
    assert doc["refit"] is True and doc["trained_on"] == "train+dev"
    assert doc["dev_error"] is None  # trained on: not a held-out number
    assert doc["epochs"] == rec["best_epoch"]
    ckpt = load_checkpoint(doc["model"])
    splits = load_splits(DataSettings("digits"), include_test=True)
    refit_model, _ = model_from_checkpoint(ckpt)
    assert doc["test_error"] == pytest.approx(evaluate(refit_model, *splits.test, "multiclass")["error"], abs=1e-12)
    assert ckpt["refit"] is True and ckpt["config"]["epochs"] == rec["best_epoch"]
    assert ckpt["best_epoch"] == rec["best_epoch"]  # the last epoch's weights, not one chosen on dev
    look = json.loads((root / "s" / "evaluations.json").read_text())[-1]
    assert look["refit"] is True and look["trial"] == rec["number"] and look["dev_error"] is None
    human = invoke("evaluate", "s", "--refit", "--root", root, "--device", "cpu")
    assert human.exit_code == 0 and "refit on train+dev" in human.stdout
    assert "no held-out error" in " ".join(human.stdout.split())


def test_evaluate_refuses_a_study_whose_data_changed(root):
    st = open_study("s", None, root)
    meta = st.user_attrs["tunectl"]
    meta["manifest"]["hashes"]["test"] = "0" * 16  # as if the data set had changed since tuning
    st.set_user_attr("tunectl", meta)
    result = invoke("evaluate", "s", "--root", root)
    assert result.exit_code == 2 and "split hash mismatch" in result.stderr


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the planted file's, refused anyway
def test_a_planted_checkpoint_in_the_study_is_refused_not_run(root, tmp_path):
    kept = checkpoint_path(root / "s", ranked(root)[0])
    marker = tmp_path / "marker"
    kept.write_bytes(pickle.dumps(Planted(marker)))
    result = invoke("evaluate", "s", "--root", root)
    assert result.exit_code == 2 and "not a tunectl checkpoint" in result.stderr
    assert not marker.exists()
    assert invoke("export", "s", "--root", root, "--out", tmp_path / "ex").exit_code == 2
    assert not marker.exists() and not (tmp_path / "ex" / "model.pt").exists()


# ----------------------------------------------------------------------------- export


def test_export_round_trip_reproduces_the_dev_error(root, tmp_path):
    best = ranked(root)[0]
    out = tmp_path / "export"
    doc = ok_json(invoke("export", "s", "--root", root, "--out", out, "--json"))
    assert doc["trial"] == best["number"]
    assert {p.name for p in out.iterdir()} == {"params.yaml", "model.pt", "split.json", "README.md"}
    params = yaml.safe_load((out / "params.yaml").read_text())
    assert params["lr"] == best["params"]["lr"] and params["epochs"] == 2 and params["seed"] == 0
    assert params["data"] == {"dataset": "digits", "data_dir": "data", "split_seed": 0}
    assert (out / "model.pt").read_bytes() == checkpoint_path(root / "s", best).read_bytes()
    manifest = json.loads((out / "split.json").read_text())
    assert manifest == open_study("s", None, root).user_attrs["tunectl"]["manifest"]
    assert f"tunectl train --params {out / 'params.yaml'}" in (out / "README.md").read_text()

    again = ok_json(invoke("train", "--params", out / "params.yaml", "--device", "cpu", "--json", "--out", tmp_path / "run"))
    assert again["dev_error"] == best["value"]  # exactly: same config, data, split and seed on the CPU
    assert again["train_error"] == pytest.approx(best["train_error"], abs=1e-6)
    splits = load_splits(DataSettings("digits"))
    model, _ = model_from_checkpoint(load_checkpoint(out / "model.pt"))
    assert evaluate(model, splits.x_dev, splits.y_dev, "multiclass")["error"] == best["value"]

    refused = invoke("export", "s", "--root", root, "--out", out)  # never overwrites an export
    assert refused.exit_code == 2 and "not an empty folder" in refused.stderr


def test_export_of_a_trial_without_weights_names_the_kept_ones(root, tmp_path):
    best = ranked(root)
    result = invoke("export", "s", "--trial", best[-1]["number"], "--root", root, "--out", tmp_path / "ex")
    assert result.exit_code == 2 and "kept no weights" in result.stderr
    assert all(str(r["number"]) in result.stderr for r in best[:3])
    assert not (tmp_path / "ex").exists()
