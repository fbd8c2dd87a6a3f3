"""Spaces from anywhere (issue 13): the shipped search spaces by name from any folder, `tunectl
spaces`, the full batch when a mini-batch covers the training split, and `tunectl --version`."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import invoke, ok_json
from tunectl.results import ATTR, open_study
from tunectl.space import find_space, load_space, shipped_dir, shipped_names, trial_config

REPO = Path(__file__).resolve().parents[1]
FAST = ("--trials", "2", "--epochs", "1", "--pruner", "none", "--root", "studies", "--json")


def test_the_shipped_spaces_are_the_repositorys():
    """What is shipped is what searchspaces/ holds (edited there, installed as package data)."""
    assert shipped_names() == sorted(p.stem for p in (REPO / "searchspaces").glob("*.yaml"))
    assert {"quick", "mlp", "cnn", "transfer"} <= set(shipped_names())
    for name in shipped_names():
        assert (shipped_dir() / f"{name}.yaml").read_bytes() == (REPO / "searchspaces" / f"{name}.yaml").read_bytes()


def test_space_by_name_from_a_folder_outside_the_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = ok_json(invoke("tune", "--space", "quick", "--dataset", "digits", "--study", "q", *FAST))
    assert out["states"]["COMPLETE"] == 2 and out["study"] == "q"
    assert (tmp_path / "studies" / "q" / "study.db").is_file()


def test_a_path_still_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("epochs: 1\nparams:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
                                        "fixed: {width: 8, depth: 1}\n")
    out = ok_json(invoke("tune", "--space", "mine.yaml", "--dataset", "iris", "--study", "p", *FAST))
    assert out["states"]["COMPLETE"] == 2
    assert find_space("mine.yaml") == Path("mine.yaml") and find_space("./mine") == Path("./mine")


def test_spaces_lists_the_shipped_spaces(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = {r["name"]: r for r in ok_json(invoke("spaces", "--json"))}
    assert set(rows) == set(shipped_names())
    assert rows["quick"]["model"] == "mlp" and rows["quick"]["dataset"] == "digits" and rows["quick"]["about"]
    assert rows["cnn"]["model"] == "cnn" and "batch_size" in rows["quick"]["params"]
    table = invoke("spaces", env={"COLUMNS": "200"})
    assert table.exit_code == 0 and all(name in table.stdout for name in rows)


def test_an_unknown_space_name_is_one_line_listing_the_shipped_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("tune", "--space", "quik", "--trials", "1")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: --space quik: no such shipped search space") and "quick, " in line
    assert all(name in line for name in shipped_names())
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize("dataset, n_train", [("wine", 106), ("iris", 90)])
def test_the_default_space_runs_on_small_data_sets(tmp_path, monkeypatch, dataset, n_train):
    """quick.yaml searches batch_size up to 128, more than wine's or iris's training split: a full batch."""
    monkeypatch.chdir(tmp_path)
    out = ok_json(invoke("tune", "--dataset", dataset, *FAST))
    assert out["states"]["COMPLETE"] == 2 and out["study"] == f"{dataset}-quick"
    study = open_study(f"{dataset}-quick", root="studies")
    assert study.user_attrs[ATTR]["manifest"]["sizes"]["train"] == n_train
    from tunectl.results import trial_records

    for r in trial_records(study):
        assert r["batch_size_used"] == min(r["config"]["batch_size"], n_train)
    assert all(r["batch_size_used"] for r in out["leaderboard"])


def test_train_records_the_full_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = ok_json(invoke("train", "--dataset", "iris", "--set", "batch_size=128", "--epochs", "1", "--out", "run",
                         "--json"))
    assert out["batch_size_used"] == 90 and out["status"] == "complete"
    shown = invoke("train", "--dataset", "iris", "--set", "batch_size=128", "--epochs", "1", "--out", "run2",
                   env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "batch size used" in shown.stdout and "90" in shown.stdout


@pytest.mark.parametrize("name", shipped_names())
def test_every_shipped_space_parses_and_its_fixed_config_passes(name):
    """Each shipped space by name: it parses, its fixed values make a valid config, and (with a data set
    and a model that needs no checkpoint) that config builds on the space's own data set."""
    from tunectl.train import check
    from tunectl.tune import base_config, settings_for, study_data

    sp = load_space(find_space(name))
    assert sp.params and sp.epochs >= 1
    if sp.model == "transfer":  # needs a checkpoint (--init-from): its fixed values still make a config
        trial_config(sp, {}, base_config(settings_for(name, {"dataset": "digits"}, study="x")))
        return
    settings = settings_for(name, {"dataset": None}, study="x")
    check(trial_config(sp, {}, base_config(settings)), study_data(settings))


def test_version(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"tunectl {version('tunectl')}"
