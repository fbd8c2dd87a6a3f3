"""A disk that fills up under every writer, not only Path.write_text (tests/test_hardening.py):
torch.save (a run's model.pt, a trial's checkpoint), the Optuna artifact store, and SQLite.

The fault is injected at the lowest level each writer reaches: torch.save and the artifact
store's write put half their bytes down and raise OSError(ENOSPC), as a real full disk does;
SQLite gets a real SQLITE_FULL ("database or disk is full") from `PRAGMA max_page_count` set
on every connection to the current size of the study file. Each case expects one error line,
exit 1, and nothing half-written left where a later command would read it. Small: iris, 1 epoch.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import pytest
import torch

from conftest import invoke
from test_hardening import SPACE  # the one-epoch lr search both files tune
TUNE = ("tune", "--space", "space.yaml", "--dataset", "iris", "--root", "studies", "--pruner", "none", "--device", "cpu")
ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


def assert_error_line(result, code: int, message: str) -> None:
    """exit `code`; stderr ends with one `error:` line (progress may come before it), no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert message in errors[0], errors[0]
    assert "Traceback" not in result.output


def half_written(root: Path) -> list[str]:
    """Temporary or partial files a writer left behind."""
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and
            (p.name.endswith((".tmp", ".partial")) or ".partial" in str(p.relative_to(root)))]


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPACE)
    return tmp_path


@pytest.fixture
def full_torch_save(monkeypatch):
    real = torch.save

    def save(obj, f, *args, **kwargs):
        real(obj, f, *args, **kwargs)
        path = Path(f)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, ENOSPC, str(f))

    monkeypatch.setattr(torch, "save", save)


def test_disk_full_saving_a_runs_model_leaves_no_run_folder(ws, full_torch_save):
    result = invoke("train", "--dataset", "iris", "--epochs", "1", "--set", "batch_size=16", "--out", "run",
                    "--device", "cpu")
    assert_error_line(result, 1, ENOSPC)
    assert not (ws / "run").exists()  # no run folder without its model: `train --params run/config.yaml` can't half-work
    assert half_written(ws) == []


def test_disk_full_saving_every_trials_checkpoint_fails_the_trials_and_keeps_none(ws, full_torch_save):
    from tunectl.results import open_study, trial_records

    result = invoke(*TUNE, "--trials", "2")
    assert_error_line(result, 1, ENOSPC)  # ten failures in a row stop the study, with the last reason
    records = trial_records(open_study("iris-space", None, "studies"))
    assert records and all(r["state"] == "FAIL" and "[Errno 28]" in r["reason"] for r in records)
    assert all(r["checkpoint"] is None for r in records)
    folder = ws / "studies" / "iris-space"
    assert [p for p in (folder / "artifacts").rglob("*") if p.is_file()] == []
    for curve in folder.glob("trials/*/curve.json"):  # what was written is whole
        json.loads(curve.read_text())
    assert half_written(ws) == []


@pytest.fixture
def full_artifact_store(monkeypatch):
    """The copy of a checkpoint into the artifact store puts half its bytes down, then the disk is full."""
    import shutil

    def copyfileobj(src, dst, *args, **kwargs):
        data = src.read()
        dst.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(shutil, "copyfileobj", copyfileobj)


def test_disk_full_in_the_artifact_store_fails_the_trials_and_no_trial_points_at_a_cut_file(ws, full_artifact_store):
    from tunectl.results import checkpoint_path, open_study, trial_records

    result = invoke(*TUNE, "--trials", "2")
    assert_error_line(result, 1, ENOSPC)
    records = trial_records(open_study("iris-space", None, "studies"))
    assert records and all(r["state"] == "FAIL" for r in records)
    assert all(checkpoint_path(ws / "studies" / "iris-space", r) is None for r in records)


def test_disk_full_in_the_artifact_store_leaves_no_cut_file(ws, full_artifact_store):
    invoke(*TUNE, "--trials", "2")
    assert [p for p in (ws / "studies" / "iris-space" / "artifacts").rglob("*") if p.is_file()] == []


def test_sqlite_full_during_a_study_is_one_line_and_the_study_reads_back(ws):
    import sqlalchemy
    from sqlalchemy import event

    from tunectl.results import open_study

    assert invoke(*TUNE, "--trials", "1").exit_code == 0
    db = ws / "studies" / "iris-space" / "study.db"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = con.execute("PRAGMA page_count").fetchone()[0]

    def full(dbapi_con, _record):
        if isinstance(dbapi_con, sqlite3.Connection):
            dbapi_con.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(sqlalchemy.engine.Engine, "connect", full)
    try:
        result = invoke(*TUNE, "--trials", "30")
    finally:
        event.remove(sqlalchemy.engine.Engine, "connect", full)
    assert_error_line(result, 1, "database or disk is full")
    assert open_study("iris-space", None, "studies").trials[0].state.name == "COMPLETE"  # what was there holds
