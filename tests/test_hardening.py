"""Hardening: every bad input answered on one line (exit 2) with nothing written; faults survived.

The bad-input matrix runs the real CLI (CliRunner) in a workspace under tmp_path and
snapshots the whole tree (names, sizes, hashes, mtimes; a study database by its logical
content) before and after: a refused command must leave no study folder, no run folder and
no changed file behind. The faults are real too: a subprocess SIGKILLed in the middle of a
checkpoint write, a trial that runs out of memory, a disk that fills up, a study root that
cannot be written.

Tests run as root here, so `chmod 000` does not make a file unreadable: an unreadable space
file is simulated by a directory and by bytes that are not UTF-8; a read-only study folder by
a root whose parent is a regular file and by a root under /sys (read-only even for root).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import invoke

SPACE = """\
epochs: 1
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
fixed:
  width: 8
  depth: 1
  batch_size: 32
"""
BAD_SPACES = {
    "syntax.yaml": SPACE.replace("log: true}", "log: true"),  # an unclosed flow mapping on line 3
    "typo.yaml": SPACE.replace("  width: 8", "  widht: 8"),
    "range.yaml": SPACE.replace("low: 1.0e-3, high: 1.0e-1", "low: 0.1, high: 0.01"),
    "loglow.yaml": SPACE.replace("low: 1.0e-3", "low: 0.0"),
    "nochoices.yaml": SPACE.replace("params:\n", "params:\n  optimizer: {type: categorical, choices: []}\n"),
    "when.yaml": SPACE.replace("params:\n", "params:\n  beta: {type: float, low: 0.8, high: 0.9, when: {optimiser: [momentum]}}\n"),
    "other.yaml": SPACE.replace("high: 1.0e-1", "high: 3.0e-1"),  # a valid but different search
    "nobatch.yaml": SPACE.replace("  batch_size: 32\n", ""),  # the default batch of 64
    "newline.yaml": '"epochs\\n": 3\n' + SPACE,  # a key holding a line break still makes one line
}


def write_workspace(root: Path) -> None:
    """Every input the matrix needs: good and bad spaces, CSV, npz and image-folder data sets."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "space.yaml").write_text(SPACE)
    for name, text in BAD_SPACES.items():
        (root / name).write_text(text)
    (root / "latin1.yaml").write_bytes("# r\xe9glages\n".encode("latin-1") + SPACE.encode())
    (root / "a_folder").mkdir()
    a = rng.normal(size=150)
    rows = "".join(f"{v:.4f},{i % 3},{int(v > 0)}\n" for i, v in enumerate(a))
    (root / "data.csv").write_text("a,b,y\n" + rows)
    (root / "nan.csv").write_text("a,b,y\n" + rows.replace(f"{a[3]:.4f},", "nan,", 1))
    (root / "inf.csv").write_text("a,b,y\n" + rows.replace(f"{a[3]:.4f},", "inf,", 1))  # NaN is a missing value now
    (root / "header_only.csv").write_text("a,b,y\n")
    (root / "one_class.csv").write_text("a,b,y\n" + "".join(f"{v:.4f},{i % 3},1\n" for i, v in enumerate(a)))
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = np.arange(40) % 2
    np.savez(root / "no_y.npz", x=x)
    np.savez(root / "short_y.npz", x=x, y=y[:39])
    x_inf = x.copy()
    x_inf[2, 1] = np.inf
    np.savez(root / "inf_x.npz", x=x_inf, y=y)
    np.savez(root / "nan_y.npz", x=x, y=np.where(np.arange(40) == 5, np.nan, np.arange(40) * 0.5))
    np.savez(root / "empty.npz", x=np.zeros((0, 3), np.float32), y=np.zeros(0))
    np.savez(root / "small.npz", x=x, y=y)  # 24 training examples: fewer than a batch of 64
    for cls, side in (("a", 8), ("b", 9)):
        (root / "mixed" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / "mixed" / cls / f"{i}.png")
    (root / "no_images" / "a").mkdir(parents=True)
    (root / "BAD.pt").write_bytes(b"this is not a checkpoint\n" * 10)


def _db_digest(path: Path) -> str:
    """A SQLite file by what it holds: opening it may checkpoint its WAL, which changes bytes, not content."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            return "sql:" + hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    except sqlite3.DatabaseError:
        return "bytes:" + hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root: size, hash and mtime (a study database: its content)."""
    out: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.name.endswith(("-wal", "-shm")):
            continue  # SQLite's side files come and go with connections; the content is compared below
        if p.is_dir():
            out[rel] = ("dir",)
        elif p.suffix == ".db":
            out[rel] = (_db_digest(p),)
        else:
            out[rel] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def assert_one_line(result, code: int, message: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.output and result.stdout == ""


# ----------------------------------------------------------------------------- a study that exists


TUNE = ("tune", "--root", "studies", "--trials", "1", "--pruner", "none")


def tuned_workspace(root: Path) -> Path:
    """write_workspace, then study 's' (csv:data.csv, one complete trial) tuned in it, ready to copy."""
    write_workspace(root)
    result = invoke(*TUNE, "--space", "space.yaml", "--dataset", "csv:data.csv", "--target", "y", "--study", "s",
                    "--json", cwd=root)
    assert result.exit_code == 0, (result.stderr, result.exception)
    with sqlite3.connect(root / "studies" / "s" / "study.db") as con:  # fold the WAL in before copying
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root


@pytest.fixture(scope="module")
def base_workspace(tmp_path_factory):
    """A workspace holding study 's' (csv:data.csv, one complete trial): what resumes are checked against."""
    return tuned_workspace(tmp_path_factory.mktemp("workspace"))


@pytest.fixture
def workspace(base_workspace, tmp_path, monkeypatch):
    root = tmp_path / "w"
    shutil.copytree(base_workspace, root)
    monkeypatch.chdir(root)
    return root


# ----------------------------------------------------------------------------- bad input: the matrix

S = ("--space", "space.yaml")
STUDY = (*S, "--dataset", "csv:data.csv", "--target", "y", "--study", "s")  # resumes study 's'

BAD_INPUT = [
    # search-space files
    ("space file missing", (*TUNE, "--space", "nope.yaml"), "nope.yaml: no such search-space file"),
    ("space file is a folder", (*TUNE, "--space", "a_folder"), "cannot read the search-space file"),
    ("space file not UTF-8", (*TUNE, "--space", "latin1.yaml"), "cannot read the search-space file"),
    ("YAML syntax error", (*TUNE, "--space", "syntax.yaml"), "syntax.yaml: line 4, column 6: YAML expected ',' or '}'"),
    ("unknown parameter", (*TUNE, "--space", "typo.yaml"), "fixed.widht: unknown hyperparameter (did you mean 'width'?)"),
    ("low >= high", (*TUNE, "--space", "range.yaml"), "params.lr: low must be < high (got 0.1 >= 0.01)"),
    ("log with low <= 0", (*TUNE, "--space", "loglow.yaml"), "params.lr: log scale needs low > 0"),
    ("categorical without choices", (*TUNE, "--space", "nochoices.yaml"), "params.optimizer.choices: give a non-empty list"),
    ("key with a line break", (*TUNE, "--space", "newline.yaml"), "unknown top-level key 'epochs\\n'"),
    ("when names an unknown parameter", (*TUNE, "--space", "when.yaml"), "names 'optimiser', which is neither searched nor fixed"),
    # data sets
    ("unknown data set", (*TUNE, *S, "--dataset", "nope"), "unknown data set 'nope'; use one of: digits"),
    ("CSV without the target column", (*TUNE, *S, "--dataset", "csv:data.csv", "--target", "label"),
     "no column 'label'; --target must be one of: a, b, y"),
    ("npz without y", (*TUNE, *S, "--dataset", "npz:no_y.npz"), "needs arrays named 'x' and 'y' (found: x)"),
    ("npz with mismatched lengths", (*TUNE, *S, "--dataset", "npz:short_y.npz"), "x has 40 rows but y has 39"),
    ("infinity in CSV features", (*TUNE, *S, "--dataset", "csv:inf.csv", "--target", "y"),
     "csv:inf.csv: line 5, column 'a': an infinite value"),
    ("inf in npz features", (*TUNE, *S, "--dataset", "npz:inf_x.npz"), "npz:inf_x.npz: features contain NaN or infinite"),
    ("NaN in npz targets", (*TUNE, *S, "--dataset", "npz:nan_y.npz"), "npz:nan_y.npz: targets contain NaN or infinite"),
    ("images of mixed sizes", (*TUNE, *S, "--dataset", "folder:mixed"), "mixed sizes [(3, 8, 8), (3, 9, 9)]; pass --image-size"),
    ("image folder without images", (*TUNE, *S, "--dataset", "folder:no_images"), "one sub-folder per class"),
    ("CSV without data rows", (*TUNE, *S, "--dataset", "csv:header_only.csv", "--target", "y"), "at least one data row"),
    ("empty npz", (*TUNE, *S, "--dataset", "npz:empty.npz"), "npz:empty.npz: the data set is empty"),
    ("one class only", (*TUNE, *S, "--dataset", "csv:one_class.csv", "--target", "y"), "only one class in the targets"),
    # options
    ("--split not summing to 1", (*TUNE, *S, "--split", "0.5,0.2,0.2"), "the fractions sum to 0.9, not 1"),
    ("--train-fraction 0", ("train", "--train-fraction", "0", "--out", "run"), "--train-fraction 0.0: must be in (0, 1]"),
    ("--train-fraction 1.5", ("train", "--train-fraction", "1.5", "--out", "run"), "--train-fraction 1.5: must be in (0, 1]"),
    ("--timeout that does not parse", (*TUNE, *S, "--timeout", "soon"), "--timeout 'soon': use a duration like 90s"),
    ("--jobs 0", (*TUNE, *S, "--jobs", "0"), "--jobs 0: must be at least 1"),
    ("unknown storage scheme", (*TUNE, *S, "--storage", "redis://host/0"), "unknown storage scheme 'redis'"),
    # a study that exists
    ("study with another space", (*TUNE, "--space", "other.yaml", "--dataset", "csv:data.csv", "--target", "y",
                                  "--study", "s"), "study 's' was started with a different search space"),
    ("study with another data set", (*TUNE, *S, "--dataset", "iris", "--study", "s"),
     "study 's' was started on data set 'csv:data.csv', not 'iris'"),
    ("study with another split", (*TUNE, *STUDY, "--split", "0.5,0.25,0.25"), "do not produce the study's split"),
    ("corrupted study file", (*TUNE, *STUDY, "--study", "broken"), "not a readable SQLite file"),
    ("show a corrupted study", ("show", "broken", "--root", "studies"), "not a readable SQLite file"),
    ("empty study file: tune", (*TUNE, *STUDY, "--study", "empty"), "study.db is empty (0 bytes): it holds no study"),
    ("empty study file: show", ("show", "empty", "--root", "studies"), "study.db is empty (0 bytes)"),
    ("empty study file: evaluate", ("evaluate", "empty", "--root", "studies"), "study.db is empty (0 bytes)"),
    ("empty study file: diagnose", ("diagnose", "empty", "--root", "studies"), "study.db is empty (0 bytes)"),
    ("empty study file: report", ("report", "empty", "--root", "studies"), "study.db is empty (0 bytes)"),
    ("study file without Optuna's tables", ("show", "foreign", "--root", "studies"), "holds no Optuna study tables"),
    ("a name whose folder another study owns", (*TUNE, *S, "--dataset", "csv:data.csv", "--target", "y", "--study", "s."),
     "--study 's.': its folder studies/s belongs to study 's'; choose another name"),
    ("an empty study name", (*TUNE, *S, "--study", ""), "--study '': give the study a name"),
    ("a 300-character study name", (*TUNE, *S, "--study", "x" * 300), "300 characters; use at most 128"),
    ("a study name with a line break", (*TUNE, *S, "--study", "a\nb"), "holds a control character"),
    # options validated before anything is written
    ("--device banana (tune)", (*TUNE, *S, "--study", "d", "--device", "banana"), "--device banana: unknown device"),
    ("--device tpu (train)", ("train", "--device", "tpu", "--out", "run"), "--device tpu: unknown device"),
    ("--seed -1 (tune)", (*TUNE, *S, "--study", "d", "--seed", "-1"), "--seed -1: must be between 0 and 4294967295"),
    ("--seed 2**32 (tune)", (*TUNE, *S, "--study", "d", "--seed", str(2**32)), "must be between 0 and 4294967295"),
    ("--heartbeat -5", (*TUNE, *S, "--study", "d", "--heartbeat", "-5"), "--heartbeat -5: give seconds between 1 and 3600"),
    ("--artifacts names a file", (*TUNE, *S, "--study", "d", "--artifacts", "data.csv"), "--artifacts data.csv: is a file"),
    ("--root names a file (tune)", ("tune", "--root", "data.csv", *S, "--trials", "1"), "--root data.csv: is a file"),
    ("--root names a file (studies)", ("studies", "--root", "data.csv"), "--root data.csv: is a file"),
    ("--root names a file (show)", ("show", "s", "--root", "data.csv"), "--root data.csv: is a file"),
    ("--storage sqlite:/// (a folder)", (*TUNE, *S, "--study", "d", "--storage", "sqlite:///"), "names a folder, not a file"),
    ("--storage naming a folder", (*TUNE, *S, "--study", "d", "--storage", "sqlite:///a_folder"), "names a folder, not a file"),
    ("show --top -1", ("show", "s", "--root", "studies", "--top", "-1"), "'--top'"),
    ("--epochs abc: click's usage error", ("train", "--epochs", "abc"), "--epochs: 'abc' is not a whole number"),
    ("an unknown option", ("train", "--epoch", "3"), "No such option: --epoch"),
    ("a missing argument", ("show",), "Missing argument"),
    ("an unknown command", ("tunee",), "No such command 'tunee'"),
    ("diagnose --next-space DIR", ("diagnose", "s", "--root", "studies", "--next-space", "a_folder"),
     "--next-space a_folder: is a folder; give a file name"),
    # train --out: refused before training, never overwritten
    ("train --out an existing run", ("train", "--epochs", "1", "--out", "studies"), "--out studies: already holds files"),
    ("train --out a file", ("train", "--epochs", "1", "--out", "data.csv"), "--out data.csv: is a file"),
    ("train --out under a file", ("train", "--epochs", "1", "--out", "data.csv/run"), "data.csv is a file, not a folder"),
    # checkpoints
    ("checkpoint not a tunectl file", ("train", "--model", "transfer", "--init-from", "BAD.pt", "--out", "run"),
     "BAD.pt: not a tunectl checkpoint"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_one_line_exit_2_nothing_written(workspace, args, message):
    broken = workspace / "studies" / "broken"
    broken.mkdir()
    (broken / "study.db").write_bytes(b"SQLite format 3\x00" + os.urandom(3000))  # a header, then garbage
    (workspace / "studies" / "empty").mkdir()
    (workspace / "studies" / "empty" / "study.db").write_bytes(b"")  # a 0-byte file: no study, never re-made
    (workspace / "studies" / "foreign").mkdir()
    with sqlite3.connect(workspace / "studies" / "foreign" / "study.db") as con:
        con.execute("CREATE TABLE notes (x)")
    con.close()
    before = snapshot(workspace)
    result = invoke(*args)
    assert_one_line(result, 2, message)
    assert snapshot(workspace) == before  # no study or run folder made, no file touched


def test_a_batch_larger_than_the_data_is_the_full_batch(workspace):
    """The default batch of 64 on 24 training examples: batch gradient descent, recorded, not refused."""
    from tunectl.results import open_study, trial_records

    result = invoke(*TUNE, "--space", "nobatch.yaml", "--dataset", "npz:small.npz", "--study", "full", "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    (trial,) = trial_records(open_study("full", root="studies"))
    assert trial["state"] == "COMPLETE" and trial["config"]["batch_size"] == 64
    assert trial["batch_size_used"] == 24  # the whole training split
    assert json.loads(result.stdout)["leaderboard"][0]["batch_size_used"] == 24


def test_data_changed_under_a_study_refuses_to_resume(workspace):
    """The CSV the study was started on is edited: the split hash no longer matches."""
    csv_path = workspace / "data.csv"
    lines = csv_path.read_text().splitlines()
    lines[5] = "9.9999,1,1"
    csv_path.write_text("\n".join(lines) + "\n")
    before = snapshot(workspace)
    result = invoke(*TUNE, *STUDY, "--trials", "2")
    assert_one_line(result, 2, "study 's': these data do not produce the study's split")
    assert "data hash" in result.stderr  # says which hash differs, so the user knows it is the data
    assert snapshot(workspace) == before


# ----------------------------------------------------------------------------- faults: storage


@pytest.mark.parametrize("root", ["a_file/studies", "/sys/tunectl-hardening"], ids=["parent is a file", "read-only /sys"])
def test_unwritable_study_root_is_one_line(workspace, root):
    (workspace / "a_file").write_text("not a folder\n")
    before = snapshot(workspace)
    result = invoke("tune", "--root", root, *S, "--dataset", "csv:data.csv", "--target", "y", "--trials", "1")
    assert result.exit_code in (1, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.stderr
    assert "check the path, its permissions and free disk space" in lines[0]
    assert snapshot(workspace) == before
    assert not Path(root).exists()


def _fill_disk_after(monkeypatch, n_ok: int) -> None:
    """The disk fills up: after n_ok writes, each write puts half its text down and raises ENOSPC."""
    real = Path.write_text
    calls = {"n": 0}

    def write_text(self, data, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= n_ok:
            return real(self, data, *args, **kwargs)
        real(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", write_text)


def _leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_disk_full_while_creating_a_study_leaves_no_study(workspace, monkeypatch):
    before = snapshot(workspace)
    _fill_disk_after(monkeypatch, 0)
    result = invoke(*TUNE, *S, "--dataset", "csv:data.csv", "--target", "y", "--study", "full")
    assert_one_line(result, 1, "No space left on device")
    assert not (workspace / "studies" / "full").exists()  # no half-made study to resume by mistake
    assert _leftovers(workspace) == []
    assert snapshot(workspace) == before


def test_disk_full_during_a_trial_fails_it_and_leaves_no_partial_file(workspace, monkeypatch):
    """The study 's' resumes; its next trial cannot write its curve: recorded as failed, nothing half-written."""
    from tunectl.results import open_study, trial_records

    with monkeypatch.context() as mp:
        _fill_disk_after(mp, 0)
        result = invoke(*TUNE, *STUDY, "--trials", "2", "--timeout", "60s", "--json")
    # ten trials in a row fail: the study stops and says so (a runtime failure: exit 1), with the reason of the last
    assert_one_line(result, 1, "No space left on device")
    records = trial_records(open_study("s", None, "studies"))
    assert records[0]["state"] == "COMPLETE"  # the trial from before is intact
    failed = [r for r in records if r["state"] == "FAIL"]
    assert failed and all("No space left on device" in r["reason"] for r in failed)
    assert _leftovers(workspace) == []


# ----------------------------------------------------------------------------- faults: a worker killed mid-trial


@pytest.mark.slow
def test_after_a_killed_worker_no_trial_is_running_the_best_holds_and_plain_optuna_reads_it(workspace):
    """What kill -9 leaves behind (a RUNNING trial whose heartbeat stopped), then a resume.

    tests/test_tune.py kills a real worker; this one plants the same state in the storage
    so that it can check what that test does not: the best value is unchanged or better, and
    the storage opens with plain Optuna, without tunectl.
    """
    import optuna

    from tunectl import storage as store
    from tunectl import studies
    from tunectl.space import load_space, suggest
    from tunectl.results import open_study, trial_records

    url = studies.default_storage_url("s", Path("studies"))
    best_before = open_study("s", None, "studies").best_value
    study = optuna.load_study(study_name="s", storage=store.open_storage(url, heartbeat=1))
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna: heartbeats are meant for optimize(), as tunectl does
        dead = study.ask()
    suggest(dead, load_space("space.yaml"))
    dead.set_user_attr("worker", "elsewhere:1")
    study._storage.record_heartbeat(dead._trial_id)  # its last heartbeat; then the worker is gone
    # past the grace period (3 x --heartbeat 1) by more than the one-second resolution of the timestamps
    # SQLite compares: a running trial whose heartbeat is not yet stale counts as started, as it should
    time.sleep(4.5)
    result = invoke(*TUNE, *STUDY, "--heartbeat", "1", "--trials", "3", "--json")
    assert result.exit_code == 0, (result.stderr, result.exception)
    doc = json.loads(result.stdout)
    assert doc["states"]["RUNNING"] == 0 and doc["best"]["value"] <= best_before, (doc["states"], result.stderr)
    records = {r["number"]: r for r in trial_records(open_study("s", None, "studies"))}
    assert records[dead.number]["state"] == "FAIL" and records[dead.number]["reason"] == "worker died"
    retry = [r for r in records.values() if r["retry_of"] == dead.number]
    assert len(retry) == 1 and retry[0]["state"] == "COMPLETE"
    # plain Optuna, its own storage object, no tunectl code: the study is intact and readable
    plain = optuna.load_study(study_name="s", storage=f"sqlite:///{Path('studies/s/study.db').resolve()}")
    assert len(plain.trials) == len(records) and plain.best_value == doc["best"]["value"]
    assert [s.study_name for s in optuna.get_all_study_summaries(plain._storage)] == ["s"]


# ----------------------------------------------------------------------------- faults: out of memory


@pytest.mark.parametrize("error", ["torch.OutOfMemoryError", "MemoryError"])
def test_a_trial_out_of_memory_is_recorded_and_the_study_goes_on(workspace, monkeypatch, error):
    import torch

    from tunectl import train
    from tunectl.results import open_study, trial_records

    exc = torch.OutOfMemoryError if error.startswith("torch") else MemoryError
    real_fit, calls = train.fit, {"n": 0}

    def fit(cfg, splits, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # the first new trial asks for more memory than there is
            raise exc("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_fit(cfg, splits, **kwargs)

    monkeypatch.setattr(train, "fit", fit)
    result = invoke(*TUNE, *STUDY, "--trials", "2", "--json")
    assert result.exit_code == 0, (result.stderr, result.exception)
    doc = json.loads(result.stdout)
    assert doc["states"]["FAIL"] == 1 and doc["states"]["COMPLETE"] == 2  # the study went on
    failed = [r for r in trial_records(open_study("s", None, "studies")) if r["state"] == "FAIL"]
    assert failed[0]["reason"] == f"failed: {exc.__name__}: CUDA out of memory. Tried to allocate 20.00 GiB"


def test_a_checkpoint_cut_short_in_the_artifact_store_is_never_used(workspace, monkeypatch):
    """The best trials' model.pt goes through the artifact store; the first new trial's copy is cut
    short (half written, then the disk is full). That trial fails with the reason, it never names
    a file as its checkpoint, no cut-short file is left in artifacts/, and the study goes on."""
    import shutil

    from tunectl.models import load_checkpoint
    from tunectl.results import checkpoint_path, open_study, trial_records

    real, calls = shutil.copyfileobj, {"n": 0}

    def copyfileobj(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            return real(src, dst, *args, **kwargs)
        data = src.read()
        dst.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shutil, "copyfileobj", copyfileobj)
    result = invoke(*TUNE, *STUDY, "--trials", "2", "--json")
    assert result.exit_code == 0, (result.stderr, result.exception)
    records = trial_records(open_study("s", None, "studies"))
    assert [r["state"] for r in records] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert records[1]["reason"].startswith("failed: OSError: [Errno 28]") and records[1]["checkpoint"] is None
    folder = workspace / "studies" / "s"
    kept = {checkpoint_path(folder, r) for r in records if r["state"] == "COMPLETE"}
    assert None not in kept and all(load_checkpoint(p)["format"] == "tunectl-checkpoint" for p in kept)
    assert set((folder / "artifacts").iterdir()) == kept  # written whole or not at all: no cut-short file


# ----------------------------------------------------------------------------- faults: kill -9 mid-checkpoint

def test_kill_9_during_a_checkpoint_write_never_leaves_a_truncated_model(tmp_path):
    """A writer process saves a 32 MB checkpoint over and over; it is SIGKILLed while its temporary file grows.

    The target is then a whole checkpoint (the last one saved); the truncated temporary file is
    never what a reader gets, and the next save replaces it. (The writer is forked from this
    process, which has torch loaded already: a fresh interpreter would spend seconds importing it.)
    """
    import torch

    from tunectl.models import load_checkpoint, save_checkpoint

    target = tmp_path / "trials" / "0" / "model.pt"
    tmp = target.with_name(f".{target.name}.tmp")
    weights = torch.randn(8_000_000)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: never returns into pytest
        try:
            os.close(read_end)
            for step in range(10_000):
                save_checkpoint(target, {"format": "tunectl-checkpoint", "version": 1, "step": step, "w": weights})
                os.write(write_end, b".")
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"."  # one whole checkpoint is down
        deadline = time.time() + 60
        while True:  # wait for the next write to be under way, freeze the writer there, then kill it
            assert time.time() < deadline
            if tmp.exists() and tmp.stat().st_size > 1_000_000:
                os.kill(pid, signal.SIGSTOP)
                if tmp.exists():  # still mid-write (not renamed between the look and the stop)
                    break
                os.kill(pid, signal.SIGCONT)
            time.sleep(0.0005)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
    assert tmp.exists() and tmp.stat().st_size < 32_000_000  # killed mid-write: a truncated temporary file
    with pytest.raises(Exception):
        torch.load(tmp, weights_only=True)  # proof that it is truncated
    ckpt = load_checkpoint(target)  # the reader gets the last whole checkpoint
    assert ckpt["step"] >= 0 and torch.equal(ckpt["w"], weights)
    save_checkpoint(target, {**ckpt, "step": ckpt["step"] + 1})  # the next save goes over the leftover
    assert not tmp.exists() and load_checkpoint(target)["step"] == ckpt["step"] + 1


def test_a_leftover_temporary_checkpoint_is_never_loaded(tmp_path):
    """Only model.pt is ever read: a leftover .model.pt.tmp (whole or not) is not a checkpoint anyone finds."""
    from tunectl.errors import ConfigError
    from tunectl.models import load_checkpoint

    target = tmp_path / "model.pt"
    target.with_name(".model.pt.tmp").write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(ConfigError, match="no such checkpoint"):
        load_checkpoint(target)
