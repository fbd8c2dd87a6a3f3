"""`tune --jobs N`: the parent loads and splits once; its workers load nothing and get the parent's pages.

Real data of every kind, real worker processes (started the way `workers.run_processes` starts
them: forked from the fork server on Linux), real `tunectl tune --jobs 2` runs: a data source that
counts its loads, the workers' tensors found in shared memory or in the cache file's mapping,
trials equal to the same trials run in one process, Ctrl-C and kill -9 of a worker.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import conftest
from conftest import ok_json
from tunectl import sharing, workers
from tunectl.data import DataSettings, load_splits
from tunectl.results import open_study, trial_records
from tunectl.tune import PRELOAD

invoke = functools.partial(conftest.invoke, env={"COLUMNS": "200"})
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# a data source of your own that counts its loads: one line per call, with the pid of the process
LOADER = """\
import os
from sklearn.datasets import load_digits

def load():
    with open(os.environ["TUNECTL_TEST_LOADS"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    d = load_digits()
    return d.images.astype("float32"), d.target
"""
FIXED = """\
model: mlp
dataset: digits
epochs: 2
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
fixed:
  width: 16
  depth: 1
  batch_size: 64
"""
GRID = """\
dataset: digits
epochs: 2
params:
  lr:    {type: categorical, choices: [0.01, 0.03]}
  width: {type: categorical, choices: [8, 16]}
fixed:
  depth: 1
  batch_size: 32
"""
SLOW = conftest.SLOW_SPACE


def digest(x) -> str:
    """The floats a split gives (pixels.Rows converted, as training sees them), hashed."""
    x = x[:] if not isinstance(x, torch.Tensor) else x
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()


def storage_of(x) -> torch.Tensor:
    return getattr(x, "base", x) if not isinstance(x, torch.Tensor) else x  # pixels.Rows keep the whole array


def report(splits) -> list[dict]:
    return [{"manifest": s.manifest, "x_train": digest(s.x_train), "x_dev": digest(s.x_dev),
             "y_train": digest(s.y_train), "y_dev": digest(s.y_dev), "backing": sharing.backing(storage_of(s.x_train)),
             "dev_backing": sharing.backing(storage_of(s.x_dev))} for s in splits]


def numbers(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if "backing" not in k} for r in rows]


def _worker_report(queue, splits) -> None:
    queue.put(report(splits))


def _worker_then_wait(queue, splits) -> None:
    queue.put(report(splits))  # every page read once
    time.sleep(600)  # to be killed


def start_worker(target, splits):
    """One process started as run_processes starts a worker (the fork server, its preload), handed `splits`."""
    import multiprocessing as mp

    workers.prestart(PRELOAD)
    ctx = mp.get_context(workers.start_method())
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(queue, sharing.share(splits)))
    proc.start()
    return proc, queue


@pytest.fixture
def kinds(tmp_path, write_mnist, write_cifar, write_image_folder, monkeypatch):
    """One small data set of every kind tunectl reads, as DataSettings."""
    import pandas as pd

    rng = np.random.default_rng(0)
    write_mnist(tmp_path / "mnist", n_train=60, n_test=20, layout="flat")
    write_cifar(tmp_path / "cifar", per_batch=8)
    write_image_folder(tmp_path / "folder", {"cat": 12, "dog": 12})
    np.savez(tmp_path / "bytes.npz", x=rng.integers(0, 256, (40, 1, 6, 6), dtype=np.uint8), y=np.arange(40) % 2)
    np.savez(tmp_path / "floats.npz", x=rng.normal(size=(40, 5)).astype(np.float32), y=np.arange(40) % 3)
    np.savez(tmp_path / "seq.npz", x=rng.normal(size=(40, 4, 3)).astype(np.float32), y=np.arange(40) % 2)
    pd.DataFrame({"a": rng.normal(size=60), "colour": rng.choice(["red", "green", None], 60),
                  "y": np.arange(60) % 2}).to_csv(tmp_path / "table.csv", index=False)
    pd.DataFrame({"text": ["".join(rng.choice(list("acgt"), 12)) for _ in range(60)],
                  "y": np.arange(60) % 2}).to_csv(tmp_path / "text.csv", index=False)
    (tmp_path / "loader.py").write_text(LOADER)
    monkeypatch.setenv("TUNECTL_TEST_LOADS", str(tmp_path / "loads.txt"))
    return {
        "digits": DataSettings(dataset="digits"),
        "diabetes (regression)": DataSettings(dataset="diabetes"),
        "mnist idx": DataSettings(dataset="mnist", data_dir=str(tmp_path / "mnist")),
        "cifar10": DataSettings(dataset="cifar10", data_dir=str(tmp_path / "cifar")),
        "folder": DataSettings(dataset=f"folder:{tmp_path / 'folder'}"),  # its rows copied out of the cache
        "folder streamed": DataSettings(dataset=f"folder:{tmp_path / 'folder'}", stream=True),  # the mapped cache
        "npz bytes": DataSettings(dataset=f"npz:{tmp_path / 'bytes.npz'}"),
        "npz floats": DataSettings(dataset=f"npz:{tmp_path / 'floats.npz'}"),
        "npz sequences": DataSettings(dataset=f"npz:{tmp_path / 'seq.npz'}"),
        "table": DataSettings(dataset=f"csv:{tmp_path / 'table.csv'}", target="y"),
        "text sequence": DataSettings(dataset=f"csv:{tmp_path / 'text.csv'}", target="y", sequence="text"),
        "digits as sequence": DataSettings(dataset="digits", as_sequence=True),
        "your loader": DataSettings(dataset=f"py:{tmp_path / 'loader.py'}:load"),
    }


def test_every_kind_of_data_reaches_a_worker_as_the_parents_pages(kinds, tmp_path):
    parent = {name: load_splits(s, raw=True) for name, s in kinds.items()}  # as tune's study_data loads them
    assert (tmp_path / "loads.txt").read_text().split() == [str(os.getpid())]
    mine = report(parent.values())
    proc, queue = start_worker(_worker_report, list(parent.values()))
    theirs = queue.get(timeout=120)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert (tmp_path / "loads.txt").read_text().split() == [str(os.getpid())]  # the worker loaded nothing
    now = report(parent.values())
    for name, a, b, c in zip(parent, mine, theirs, now):
        assert a["manifest"] == b["manifest"], name  # the same split, its hashes and scaling
        for part in ("x_train", "x_dev", "y_train", "y_dev"):
            assert a[part] == b[part] == c[part], (name, part)  # the same numbers, to the bit
        if name == "folder streamed":  # the cache's images.npy, mapped by the worker itself: the same file
            assert b["backing"] == a["backing"] == b["dev_backing"] and b["backing"].endswith("/images.npy"), b
        else:  # in shared memory, in the worker and (moved there in place, no second copy) in the parent
            assert a["backing"] == "private" and b["backing"] == c["backing"] == "shared memory", (name, a, b, c)
    # the parent loaded the images as bytes (uint8 rows), and so they reached the worker
    assert parent["mnist idx"].x_train.base.dtype == torch.uint8 == parent["folder"].x_train.base.dtype


def test_a_killed_worker_leaves_the_parents_shared_data_intact(kinds):
    names = ("digits", "mnist idx", "folder", "table")
    parent = [load_splits(kinds[n], raw=True) for n in names]
    before = report(parent)
    proc, queue = start_worker(_worker_then_wait, parent)
    assert [r["x_train"] for r in queue.get(timeout=120)] == [r["x_train"] for r in before]
    os.kill(proc.pid, signal.SIGKILL)  # mid-life, its mappings open
    proc.join(timeout=60)
    assert proc.exitcode == -signal.SIGKILL
    assert numbers(report(parent)) == numbers(before)  # the parent's pages: unchanged, still readable
    again, queue = start_worker(_worker_report, parent)  # and still good to hand to the next worker
    assert numbers(queue.get(timeout=120)) == numbers(before)
    again.join(timeout=60)


def _stream_all(queue, splits) -> None:
    from tunectl import pixels

    splits = sharing.received(splits)  # what tune.worker_main does first
    rows = splits[0].x_train
    pixels.STREAM_HOLD = 4096  # give the pages back after every few rows (the real bound is 64 MiB)
    for i in range(0, len(rows), 2):
        rows[i:i + 2]
    queue.put({"pages": rows.pages is not None, "same": rows.pages is splits[0].x_dev.pages,
               "resident": conftest.mapped(), "read": rows.nbytes})  # the cache file's pages this worker holds


def test_a_streaming_worker_gives_the_files_pages_back_as_it_reads(tmp_path, write_image_folder):
    """A streamed split's Pages (its mapping, which cannot travel) are rebuilt in the worker from the mapping it
    received, one for the train and dev splits together, so the worker gives the cache file's pages back as it
    streams (before, it held every page it had read)."""
    write_image_folder(tmp_path / "big", {"cat": 20, "dog": 20}, size=(32, 32))  # 3 KiB an image
    splits = load_splits(DataSettings(dataset=f"folder:{tmp_path / 'big'}", stream=True), raw=True)
    proc, queue = start_worker(_stream_all, [splits])
    got = queue.get(timeout=120)
    proc.join(timeout=60)
    assert got["pages"] and got["same"], got
    assert got["read"] > 4 * 4096 and got["resident"] <= got["read"] // 2, got


def test_a_mapped_tensor_a_worker_writes_to_stays_that_workers_own(kinds):
    """The cache file is mapped copy-on-write: a worker writing into its data changes neither the file nor
    its parent (tensors in shared memory are the parent's pages: nothing in tunectl writes to them)."""
    splits = load_splits(kinds["folder streamed"], raw=True)
    before = digest(splits.x_train)
    proc, queue = start_worker(_scribble, [splits])
    assert queue.get(timeout=120) != before  # the worker saw its own write ...
    proc.join(timeout=60)
    assert digest(splits.x_train) == before  # ... which reached neither the parent
    assert digest(load_splits(kinds["folder streamed"], raw=True).x_train) == before  # nor the file


def test_a_mapped_cache_the_parent_wrote_to_is_sent_as_its_own_bytes(kinds):
    """Copy-on-write pages of the parent's mapping are not in the file: then the worker gets the parent's
    bytes (in shared memory), not the file's."""
    splits = load_splits(kinds["folder streamed"], raw=True)
    splits.x_train.base[0].fill_(3)
    assert sharing.mapped_file(splits.x_train.base) is None
    proc, queue = start_worker(_worker_report, [splits])
    (got,) = queue.get(timeout=120)
    proc.join(timeout=60)
    assert got["backing"] == "shared memory" and got["x_train"] == digest(splits.x_train)


def _scribble(queue, splits) -> None:
    splits[0].x_train.base.fill_(7)
    queue.put(digest(splits[0].x_train))


# ----------------------------------------------------------------------------- the real command


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__", "kubernetes", "slurm"))
    for name, text in {"fixed": FIXED, "grid": GRID, "slow": SLOW}.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    (tmp_path / "loader.py").write_text(LOADER)
    monkeypatch.setenv("TUNECTL_TEST_LOADS", str(tmp_path / "loads.txt"))
    return tmp_path


def workers_of(study: str) -> set[str]:
    return {t.user_attrs.get("worker") for t in open_study(study, root="studies").get_trials(deepcopy=False)}


@pytest.mark.slow
def test_jobs_2_loads_the_data_once_and_runs_your_model_on_it(ws):
    """Your own loader (which counts its loads) and your own model, tuned by two workers: one load, in the
    parent; every trial complete; the split the study records is the loader's."""
    doc = ok_json(invoke("tune", "--space", "examples/convnet.yaml", "-d", "py:loader.py:load", "--trials", "4",
                         "--epochs", "1", "--jobs", "2", "--pruner", "none", "--study", "own", "--root", "studies",
                         "--device", "cpu", "--json"))
    assert doc["states"]["COMPLETE"] >= 4 and doc["states"]["FAIL"] == 0 and doc["states"]["RUNNING"] == 0
    assert (ws / "loads.txt").read_text().split() == [str(os.getpid())]  # this process (the command), once
    assert len(workers_of("own")) == 2 and f"{os.uname().nodename}:{os.getpid()}" not in workers_of("own")
    stored = json.loads((ws / "studies" / "own" / "split.json").read_text())
    assert stored["data_hash"] == load_splits(DataSettings(dataset="py:loader.py:load")).manifest["data_hash"]


@pytest.mark.slow
def test_jobs_2_trains_what_one_process_trains(ws):
    """Every point of a grid, trained by two workers on the shared splits and by one process on its own:
    the same split, the same curves to the bit (one torch thread each, as this test session runs)."""
    one = ok_json(invoke("tune", "--space", "grid.yaml", "--sampler", "grid", "--pruner", "none", "--jobs", "1", "--study", "one",
                         "--root", "studies", "--json"))
    two = ok_json(invoke("tune", "--space", "grid.yaml", "--sampler", "grid", "--pruner", "none", "--jobs", "2", "--study", "two",
                         "--root", "studies", "--json"))
    assert one["states"]["COMPLETE"] == 4 and two["states"]["COMPLETE"] >= 4 and two["states"]["FAIL"] == 0
    assert len(workers_of("two")) == 2
    split = [json.loads((ws / "studies" / s / "split.json").read_text()) for s in ("one", "two")]
    assert split[0]["hashes"] == split[1]["hashes"] and split[0]["data_hash"] == split[1]["data_hash"]

    def curves(study):
        out: dict[str, set] = {}
        for r in trial_records(open_study(study, root="studies"), ws / "studies" / study):
            out.setdefault(json.dumps(r["params"], sort_keys=True), set()).add(
                tuple((c["train_loss"], c["dev_error"]) for c in r["curve"]))
        return out

    one_curves, two_curves = curves("one"), curves("two")
    assert len(one_curves) == 4 and len(two_curves) >= 2  # (Optuna's grid under two workers may repeat a point)
    for params, seen in two_curves.items():  # each point two workers ran: exactly what one process ran
        assert seen == one_curves[params], params


def start_tune(ws: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tunectl.cli", "tune", "--root", "studies", "--space", "slow.yaml", "--heartbeat",
           "1", "--pruner", "none", "--jobs", "2", *args]
    # its own process group, as a terminal's foreground job: Ctrl-C reaches the command and its workers
    return subprocess.Popen(cmd, cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def running(db: Path) -> list[tuple[int, str]]:
    """(number, worker) of the trials RUNNING with a heartbeat."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute(
                "SELECT t.number, a.value_json FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
                "JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'worker' "
                "WHERE t.state = 'RUNNING'").fetchall()
    except sqlite3.Error:
        return []


def wait_both_running(proc: subprocess.Popen, db: Path, timeout: float = 240) -> list[tuple[int, str]]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        now = running(db)
        if len({w for _, w in now}) == 2:
            return now
        if proc.poll() is not None:
            raise AssertionError(f"tune exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"two workers' trials not RUNNING within {timeout} s")


@pytest.mark.slow
def test_ctrl_c_stops_both_workers_cleanly_and_exits_130(ws):
    db = ws / "studies" / "stop" / "study.db"
    proc = start_tune(ws, "--study", "stop", "--trials", "20")
    try:
        stopped = wait_both_running(proc, db)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    assert "Stopped. Resume with the same command" in out
    records = {r["number"]: r for r in trial_records(open_study("stop", root=ws / "studies"))}
    assert all(r["state"] != "RUNNING" for r in records.values())
    for number, _ in stopped:  # each worker's running trial, recorded as interrupted
        assert records[number]["state"] == "FAIL" and records[number]["reason"] == "interrupted"


@pytest.mark.parametrize("value", ["fork", "banana", "threads"])
def test_a_bad_worker_start_method_is_refused_before_anything_is_written(ws, value):
    """TUNECTL_WORKER_START chooses how workers start (spawn or forkserver); anything else is refused in one
    line, exit 2, before a study exists (not silently replaced by the default). Plain fork is refused too:
    this process has run torch, whose thread pools a fork copies without their threads."""
    r = conftest.invoke("tune", "--space", "fixed.yaml", "--study", "bad-start", "--root", "studies", "--trials", "2",
                        "--jobs", "2", env={"TUNECTL_WORKER_START": value})
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"TUNECTL_WORKER_START={value!r}" in lines[0] and "unset it" in lines[0], lines
    assert not (ws / "studies").exists()


def _fds(pid: int) -> dict[int, str]:
    out = {}
    for n in (1, 2):
        try:
            out[n] = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            pass
    return out


@pytest.mark.skipif(workers.start_method() != "forkserver", reason="the fork server is Linux's (spawn elsewhere)")
def test_the_fork_server_holds_neither_pipe_of_the_command(ws):
    """`tunectl tune --jobs 2 | jq` ends when the command does: the fork server (alive a second longer, for its
    own interpreter's exit) must not hold the command's stdout or stderr; the workers do, while they run."""
    db = ws / "studies" / "pipes" / "study.db"
    proc = start_tune(ws, "--study", "pipes", "--trials", "20")
    try:
        wait_both_running(proc, db)
        ours = _fds(proc.pid)
        group = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == proc.pid]
        server = [p for p in group if b"multiprocessing.forkserver" in _cmdline(p) and _ppid(p) == proc.pid]
        assert len(server) == 1, [(p, _ppid(p), _cmdline(p)[:80]) for p in group]
        assert ours and not set(_fds(server[0]).values()) & set(ours.values()), (_fds(server[0]), ours)
        forked = [_fds(p) for p in group if _ppid(p) == server[0]]  # the workers: forks of the server
        assert len(forked) == 2 and all(f == ours for f in forked), (forked, ours)
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.slow
def test_a_worker_killed_with_9_leaves_the_other_worker_and_the_study_whole(ws):
    db = ws / "studies" / "crash" / "study.db"
    proc = start_tune(ws, "--study", "crash", "--trials", "5")
    try:
        (killed, worker), *_ = wait_both_running(proc, db)
        os.kill(int(json.loads(worker).split(":")[-1]), signal.SIGKILL)  # one worker, mid-trial
        at = time.time()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    records = {r["number"]: r for r in trial_records(open_study("crash", root=ws / "studies"))}
    assert records[killed]["state"] == "FAIL" and records[killed]["reason"] == "worker died"
    assert all(r["state"] != "RUNNING" for r in records.values())
    # the other worker went on, on the same shared data: trials started after the kill, complete and sound
    after = [t for t in open_study("crash", root=ws / "studies").get_trials(deepcopy=False)
             if t.datetime_start and t.datetime_start.timestamp() > at and t.state.name == "COMPLETE"]
    assert after and all(0 <= t.value < 0.9 for t in after)
    assert sum(r["state"] == "COMPLETE" for r in records.values()) >= 5 - 1


@pytest.mark.slow
def test_without_room_in_shared_memory_each_worker_loads_its_own_copy(ws, monkeypatch):
    """A container's /dev/shm of 64 MB: said in one note, and the workers load and split the data themselves
    (checked against the study's manifest), as a `tune` of their own would."""
    import shutil as sh

    real = sh.disk_usage
    monkeypatch.setattr(sh, "disk_usage", lambda p: real(p)._replace(free=1000) if str(p) == "/dev/shm" else real(p))
    result = invoke("tune", "--space", "fixed.yaml", "-d", "py:loader.py:load", "--trials", "3", "--jobs", "2",
                    "--pruner", "none", "--study", "small-shm", "--root", "studies", "--json")
    doc = ok_json(result)
    assert doc["states"]["COMPLETE"] >= 3 and doc["states"]["FAIL"] == 0
    assert "note: cannot hand the data to the workers in shared memory (/dev/shm has 0 MiB free" in result.stderr
    loads = (ws / "loads.txt").read_text().split()
    assert len(loads) == 3 and loads[0] == str(os.getpid()) and len(set(loads)) == 3  # the parent, then each worker


def _probe(payload, worker: int, threads: int) -> None:
    """A worker's target as run_processes calls it: report what it was handed, on the command's stderr too."""
    splits = payload["splits"]
    Path(payload["out"], f"{worker}.json").write_text(json.dumps(
        {"x_train": digest(splits.x_train), "backing": sharing.backing(storage_of(splits.x_train)),
         "threads": threads, "environ": os.environ.get("TUNECTL_TEST_MARK")}))
    print(f"probe {worker} writes to the command's stderr", file=sys.stderr, flush=True)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_run_processes_hands_each_worker_the_parents_pages(kinds, tmp_path, monkeypatch, capfd, method):
    """Both ways of starting workers (the fork server where there is one; spawn on macOS and Windows)."""
    monkeypatch.setenv("TUNECTL_WORKER_START", method)
    monkeypatch.setenv("TUNECTL_TEST_MARK", "the command's environment")
    assert workers.start_method() == method
    splits = load_splits(kinds["folder streamed"], raw=True)
    workers.prestart(PRELOAD)
    payload = {"splits": sharing.share(splits), "out": str(tmp_path)}
    workers.run_processes(_probe, payload, 2, lambda: None, "none", "sqlite:///unused.db")
    got = [json.loads((tmp_path / f"{w}.json").read_text()) for w in (0, 1)]
    assert all(g["x_train"] == digest(splits.x_train) and g["backing"].endswith("/images.npy") for g in got), got
    assert all(g["threads"] == max(1, (os.cpu_count() or 1) // 2) for g in got)
    assert all(g["environ"] == "the command's environment" for g in got)  # not the fork server's own
    err = capfd.readouterr().err
    assert "probe 0 writes to the command's stderr" in err and "probe 1 writes" in err, err[-2000:]
