"""No study, run or number lost: races between processes, overwrites, precision, damaged neighbours.

These run the real CLI in real processes (two `tunectl` commands at once, as two terminals or
two cron jobs would) on digits with one-epoch trials, and check what is on disk afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import invoke, ok_json

SPACE = """\
epochs: 1
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
fixed: {width: 8, depth: 1, batch_size: 64}
"""
OTHER = SPACE.replace("high: 1.0e-1", "high: 3.0e-1")  # a valid but different search


@pytest.fixture
def ws(tmp_path, monkeypatch):
    (tmp_path / "a.yaml").write_text(SPACE)
    (tmp_path / "b.yaml").write_text(OTHER)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tunectl.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def trials_in(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


def studies_in(db: Path) -> list[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return [r[0] for r in con.execute("SELECT study_name FROM studies")]


# ----------------------------------------------------------------------------- two processes, one new study


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_two_tunes_racing_for_one_new_study_lose_nothing(ws, round_):
    """Two terminals start study 'race' at once with different spaces: one wins and finishes
    intact; the other is refused with one line and removes nothing (it used to delete the
    winner's folder while the winner was writing into it)."""
    a = cli("tune", "--space", "a.yaml", "--study", "race", "--trials", "2", "--json")
    b = cli("tune", "--space", "b.yaml", "--study", "race", "--trials", "2", "--json")
    (out_a, err_a), (out_b, err_b) = a.communicate(timeout=300), b.communicate(timeout=300)
    codes = sorted([a.returncode, b.returncode])
    assert codes == [0, 2], (a.returncode, err_a[-1500:], b.returncode, err_b[-1500:])
    winner_out, loser_err = (out_a, err_b) if a.returncode == 0 else (out_b, err_a)
    winner_space = "a.yaml" if a.returncode == 0 else "b.yaml"
    lines = loser_err.strip().splitlines()
    assert len(lines) == 1 and "started with a different search space" in lines[0], loser_err
    doc = json.loads(winner_out)
    assert doc["states"]["COMPLETE"] + doc["states"]["PRUNED"] == 2
    folder = ws / "studies" / "race"
    assert [s for _, s in trials_in(folder / "study.db")] == ["COMPLETE", "COMPLETE"] or \
        sorted(s for _, s in trials_in(folder / "study.db")) == sorted(["COMPLETE", "PRUNED"])
    # the folder holds the winner's study: its space, its curves
    high = "0.3" if winner_space == "b.yaml" else "0.1"
    assert f"high: {high}" in (folder / "space.yaml").read_text()
    assert sorted(p.name for p in (folder / "trials").iterdir()) == ["0", "1"]
    assert invoke("show", "race", "--json").exit_code == 0


@pytest.mark.slow
def test_two_tunes_of_one_study_run_exactly_the_trials_asked(ws):
    """Same space, same study, two processes, --trials 3: together they run 3 trials, not 4."""
    a = cli("tune", "--space", "a.yaml", "--study", "pair", "--trials", "3", "--pruner", "none", "--json")
    b = cli("tune", "--space", "a.yaml", "--study", "pair", "--trials", "3", "--pruner", "none", "--json")
    for p in (a, b):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-1500:]
    states = [s for _, s in trials_in(ws / "studies" / "pair" / "study.db")]
    assert states == ["COMPLETE"] * 3


@pytest.mark.slow
def test_jobs_beyond_the_trials_asked_run_no_extra_trial(ws):
    result = invoke("tune", "--space", "a.yaml", "--study", "one", "--trials", "1", "--jobs", "8", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["n_trials"] == 1
    assert "note: --jobs 8: running 1 worker" in result.stderr  # the cap is said, on one line


def test_plan_jobs_caps_by_cores_memory_and_trials_left(monkeypatch):
    from tunectl import workers

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(workers, "memory", lambda: (2 * 2**30, 5 * 2**30))  # 2 GiB a worker, 5 GiB free
    assert workers.plan_jobs(48, None, 0) == (2, "5.0 GiB free at 2.0 GiB a worker")
    monkeypatch.setattr(workers, "memory", lambda: (None, None))
    assert workers.plan_jobs(48, None, 0) == (4, "4 CPU cores")
    assert workers.plan_jobs(3, 10, 8) == (2, "2 trials left to run")
    assert workers.plan_jobs(2, None, 0) == (2, "")
    assert workers.plan_jobs(4, 5, 4) == (1, "1 trial left to run")
    assert workers.plan_jobs(48, 5, 5) == (1, "")  # nothing left: one worker, nothing said


# ----------------------------------------------------------------------------- names that share a folder


@pytest.mark.parametrize("first, second", [("a/b", "a_b"), ("x", "x."), ("x.", "x")])
def test_names_mapping_to_one_folder_cannot_share_it(ws, first, second):
    assert invoke("tune", "--space", "a.yaml", "--study", first, "--trials", "1", "--json").exit_code == 0
    db = next((ws / "studies").glob("*/study.db"))
    before = (trials_in(db), db.parent.joinpath("space.yaml").read_text())
    result = invoke("tune", "--space", "b.yaml", "--study", second, "--trials", "1")
    assert result.exit_code == 2 and f"belongs to study {first!r}" in result.stderr, result.stderr
    assert (trials_in(db), db.parent.joinpath("space.yaml").read_text()) == before
    assert studies_in(db) == [first]


# ----------------------------------------------------------------------------- an empty study file


def test_an_empty_study_file_is_never_reinitialised(ws):
    folder = ws / "studies" / "z"
    (folder / "trials" / "0").mkdir(parents=True)
    (folder / "trials" / "0" / "curve.json").write_text("[{\"dev_error\": 0.1}]\n")
    (folder / "study.db").write_bytes(b"")
    for args in (("show", "z"), ("tune", "--space", "a.yaml", "--study", "z", "--trials", "1"),
                 ("evaluate", "z"), ("studies",)):
        result = invoke(*args)
        assert (folder / "study.db").stat().st_size == 0, args  # no tables written into it
        assert (folder / "trials" / "0" / "curve.json").read_text() == "[{\"dev_error\": 0.1}]\n"
        assert sorted(p.name for p in folder.iterdir()) == ["study.db", "trials"], args
        if args != ("studies",):
            assert result.exit_code == 2 and "is empty (0 bytes)" in result.stderr, (args, result.stderr)


def test_one_damaged_study_file_does_not_hide_the_others(ws):
    assert invoke("tune", "--space", "a.yaml", "--study", "good", "--trials", "1", "--json").exit_code == 0
    (ws / "studies" / "bad").mkdir()
    (ws / "studies" / "bad" / "study.db").write_bytes(b"SQLite format 3\x00" + b"\x01" * 3000)
    result = invoke("studies", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["study"]: r for r in json.loads(result.stdout)}
    assert rows["good"]["n_trials"] == 1 and "unreadable" not in rows["good"]
    assert "not a readable SQLite file" in rows["bad"]["unreadable"]
    table = invoke("studies")
    assert table.exit_code == 0 and "unreadable" in table.stdout


# ----------------------------------------------------------------------------- precision


def test_errors_are_stored_and_emitted_at_full_precision(tiny_study):
    from tunectl.results import open_study

    doc = ok_json(invoke("show", tiny_study.name, "--root", tiny_study.root, "--json"))
    assert doc["leaderboard"]
    for row in doc["leaderboard"]:
        assert row["dev_error"] == row["value"]  # the same float, not a 6-decimal copy of it
    study = open_study(tiny_study.name, None, tiny_study.root)
    n_dev = study.user_attrs["tunectl"]["manifest"]["sizes"]["dev"]
    from tunectl.results import trial_records

    for t, rec in zip(study.trials, trial_records(study, tiny_study.folder)):
        curve = rec["curve"]
        assert rec["dev_error"] == t.value == min(r["dev_error"] for r in curve)
        # an error rate on n dev examples is k/n exactly: rounding to 6 decimals would break this identity
        assert round(t.value * n_dev) / n_dev == t.value


# ----------------------------------------------------------------------------- resuming with other options


def test_resuming_with_another_sampler_is_recorded_not_silent(ws):
    from tunectl.results import ATTR, open_study

    assert invoke("tune", "--space", "a.yaml", "--study", "r", "--trials", "1", "--sampler", "random").exit_code == 0
    kept = invoke("tune", "--space", "a.yaml", "--study", "r", "--trials", "2", "--json")
    assert kept.exit_code == 0 and "note:" not in kept.stderr  # no --sampler: the study's own
    assert open_study("r").user_attrs[ATTR]["sampler"] == "random"
    changed = invoke("tune", "--space", "a.yaml", "--study", "r", "--trials", "3", "--sampler", "tpe", "--json")
    assert changed.exit_code == 0, changed.stderr
    assert "--sampler tpe from now on (it was random)" in changed.stderr
    meta = open_study("r").user_attrs[ATTR]
    assert meta["sampler"] == "tpe" and meta["changes"][0]["sampler"] == ["random", "tpe"]


# ----------------------------------------------------------------------------- train --out


def test_train_out_never_overwrites_and_force_replaces(ws):
    first = invoke("train", "--epochs", "1", "--out", "run", "--json")
    assert first.exit_code == 0, first.stderr
    files = {p.name: p.read_bytes() for p in (ws / "run").iterdir()}
    again = invoke("train", "--epochs", "2", "--out", "run", "--json")
    assert again.exit_code == 2 and "already holds files" in again.stderr and "--force" in again.stderr
    assert {p.name: p.read_bytes() for p in (ws / "run").iterdir()} == files
    forced = invoke("train", "--epochs", "2", "--out", "run", "--force", "--json")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads((ws / "run" / "history.json").read_text())["epochs"] == 2
    assert [p.name for p in ws.iterdir() if p.name.startswith(".")] == []  # no staging folder left


@pytest.mark.slow
def test_two_trains_into_one_new_out_keep_both_runs(ws):
    a = cli("train", "--epochs", "1", "--out", "same", "--json")
    b = cli("train", "--epochs", "1", "--seed", "1", "--out", "same", "--json")
    outs = []
    for p in (a, b):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-1500:]
        outs.append(json.loads(out)["out"])
    assert sorted(outs) == ["same", "same-2"]  # the second is kept beside the first, not over it
    for folder in outs:
        assert sorted(p.name for p in (ws / folder).iterdir()) == ["config.yaml", "history.json", "model.pt", "split.json"]


@pytest.mark.slow
def test_kill_9_during_train_leaves_no_half_run(ws):
    p = cli("train", "--epochs", "100000", "--out", "killed")  # hours of epochs: still training when killed
    # the first epoch's row on stderr: torch imported, data loaded, training (on an idle machine in
    # ~3 s, and never too early on a loaded one, as a fixed sleep could be)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        assert line, f"train exited ({p.wait()}) before its first epoch"
        if line.split()[:1] == ["1"]:
            break
    else:
        pytest.fail("no epoch finished within 180 s")
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert not (ws / "killed").exists()
    assert [x.name for x in ws.iterdir() if x.name.startswith(".killed")] == []
