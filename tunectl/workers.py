"""Workers: the processes that run trials, the signals that stop them, and the lock that counts them.

A study runs in one process (`--jobs 1`) or in several worker processes (forked from a fork
server that imported torch once, or spawned), each with its share of the CPU threads, all on one
storage with heartbeats. Ctrl-C and SIGTERM only raise a flag;
the running trial stops at its next mini-batch and is recorded, so nothing is left half done.
This module knows how trials are run safely, not what a trial is: `tune.py` hands it the
objective and the study.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from tunectl.errors import RunError, StorageError, TunectlError
from tunectl import storage as store


class Stop:
    """Ctrl-C and SIGTERM only raise this flag; the running trial stops at its next mini-batch.

    Python's default raises KeyboardInterrupt wherever the signal lands: inside Optuna's own
    bookkeeping (a trial just created, a SQLite transaction, the heartbeat thread starting) that
    leaves a trial RUNNING or a lock held and the process hung. Between two batches nothing is
    half done, so the trial is recorded as interrupted and the summary printed.
    """

    requested = False


def request_stop(signum, frame) -> None:
    Stop.requested = True


def check_stop(*_: Any) -> None:
    """Raise KeyboardInterrupt between two mini-batches once a stop was asked for."""
    if Stop.requested:
        raise KeyboardInterrupt


def stop_between_trials(study: optuna.Study, trial) -> None:
    if Stop.requested:  # the signal came while Optuna recorded a trial: start no other
        study.stop()


def on_signals(handler) -> dict[int, Any]:
    """Install `handler` for SIGINT and SIGTERM; return the previous ones (none off the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


class Gate:
    """An exclusive lock (flock on a file in the study folder) between this machine's workers.

    Held from the count of started trials until the new trial has started (the objective's
    first act releases it), so that two workers cannot both start the last trial asked for.
    """

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def __enter__(self) -> "Gate":
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _started(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


def parse_timeout(text: str | None) -> float | None:
    """'90s', '30m', '8h', '1h30m' or plain seconds -> seconds."""
    if text is None:
        return None
    s = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    total, num = 0.0, ""
    try:
        for ch in s:
            if ch.isdigit() or ch == ".":
                num += ch
            elif ch in units and num:
                total += float(num) * units[ch]
                num = ""
            else:
                raise ValueError
        if num:
            total += float(num)
    except ValueError:
        total = -1
    if not s or total <= 0 or not math.isfinite(total):
        raise TunectlError(f"--timeout {text!r}: use a duration like 90s, 30m, 8h or 1h30m")
    return total


def run_trials(study: optuna.Study, objective: Callable, gate: Gate, n_trials: int | None, timeout: float | None,
               callbacks: list[Callable], storage_url: str) -> None:
    """Run trials one by one until the target, the timeout, a stop, an abort or an exhausted grid.

    One trial per optimize() call, each started under the gate: the count of trials started
    (running or finished) and the start of the next are one step, so the workers of this machine
    together never run more trials than asked. The objective releases the gate once its trial runs.

    Why not Optuna's `MaxTrialsCallback(n, states=(COMPLETE, PRUNED))`: it counts finished trials and
    stops a worker after a trial ends, so every worker that started a trial while the count was still
    short runs it: N workers overshoot by up to N - 1. Measured (optuna 5.0, SQLite, 1-second trials,
    `study.optimize(..., callbacks=[MaxTrialsCallback(5, states=(COMPLETE, PRUNED))])` in each worker,
    started together): 2 workers ran 6 trials for 5 asked (3 runs of 3), 4 workers ran 8. Counting
    started trials (RUNNING included) under the gate is what keeps `--trials 5 --jobs 2` at 5.
    """
    deadline = time.time() + timeout if timeout else None
    while not Stop.requested and not (deadline and time.time() >= deadline):
        with gate:
            if study.user_attrs.get("aborted"):
                break
            if isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
                break  # every point of the grid was tried: the search is done
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial is not counted as running
            if n_trials is not None and _started(study) >= n_trials:
                break
            try:
                study.optimize(objective, n_trials=1, callbacks=callbacks, catch=(Exception,), gc_after_trial=False)
            except Exception as e:  # noqa: BLE001 - Optuna could not record a trial: say why the storage failed
                cause = store.storage_cause(e)
                if cause is None:
                    raise
                raise StorageError(f"the study storage failed: {store.mask_text(store.storage_error(cause), storage_url)}"
                                   f"; free disk space or check the database server, then resume") from None


def _fail(study: optuna.Study, storage, number: int, reason: str) -> None:
    """Fail a trial another process left RUNNING, with a reason (public storage methods only)."""
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)
    try:
        storage.set_trial_user_attr(trial_id, "reason", reason)
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
        pass


def fail_unstarted(study: optuna.Study, storage, grace: float | None) -> None:
    """Fail RUNNING trials whose worker died before signing them (the objective's first act).

    Optuna times a trial out by its last heartbeat; a worker killed between creating a trial
    and its first heartbeat leaves one that would stay RUNNING forever. Nothing of it ran.
    """
    import datetime

    if not grace:
        return
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "worker" not in t.user_attrs and t.datetime_start and (now - t.datetime_start).total_seconds() > grace:
            _fail(study, storage, t.number, "worker died before the trial started")


def sampler_seed(seed: int, worker: int, shared: bool) -> int:
    """seed + worker; on a server, also who this process is: every machine's first worker is worker 0,
    and equal seeds would propose the same first trials. (Which worker runs which trial depends on
    timing there anyway, so a study on a server is not reproducible trial for trial.)"""
    if not shared:
        return seed + worker
    import zlib

    return zlib.crc32(f"{seed}:{worker}:{socket.gethostname()}:{os.getpid()}".encode()) % 2**31


def plan_jobs(asked: int, n_trials: int | None, finished: int, shared: int = 0) -> tuple[int, str]:
    """Workers this machine can hold: no more than its cores, than its free memory holds at this
    process's size less `shared` (the data's bytes, which the workers share with this process rather
    than load again), or than the trials still to run."""
    jobs, why = asked, []
    cores = os.cpu_count() or 1
    if jobs > cores:
        jobs, why = cores, [f"{cores} CPU cores"]
    per_worker, free = memory()
    if per_worker and shared:  # torch and the interpreter a worker holds; never less than a quarter of us
        per_worker = max(per_worker - shared, per_worker // 4)
    if per_worker and free and jobs > 1:
        fit = max(1, int(0.8 * free // per_worker))
        if fit < jobs:
            jobs, why = fit, [f"{free / 2**30:.1f} GiB free at {per_worker / 2**30:.1f} GiB a worker"]
    if n_trials is not None and n_trials <= finished:
        return 1, ""  # the study has its trials: nothing will run, and there is nothing to say
    if n_trials is not None and jobs > n_trials - finished:
        jobs, why = n_trials - finished, [f"{n_trials - finished} trial{'s' * (n_trials - finished > 1)} left to run"]
    return jobs, "; ".join(why)


def memory() -> tuple[int | None, int | None]:
    """(this process's resident bytes, the machine's available bytes), or None where unknown (not Linux)."""
    try:
        resident = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return resident, int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None, None


def start_method() -> str:
    """How worker processes start: a fork server on Linux, a fresh interpreter (spawn) elsewhere.

    Never a plain fork of this process: it has run torch, whose thread pools' locks a fork copies
    without their threads (a worker can hang on its first parallel operation). The fork server is
    a fresh process that only imports (torch, Optuna, tunectl: `prestart`'s list) and runs nothing,
    so it holds no thread pool; each worker is a fork of it and needs none of those imports again
    (`bench/parallel.py` measures the start-up). macOS's system libraries are not fork-safe (Python
    spawns there by default); Windows has no fork. TUNECTL_WORKER_START=spawn|forkserver chooses,
    for benchmarks that compare the two.
    """
    import multiprocessing as mp

    asked = os.environ.get("TUNECTL_WORKER_START", "").strip()
    if asked:
        if asked not in ("spawn", "forkserver") or asked not in mp.get_all_start_methods():
            usable = [m for m in ("forkserver", "spawn") if m in mp.get_all_start_methods()]
            raise TunectlError(f"TUNECTL_WORKER_START={asked!r}: use {' or '.join(usable)}, or unset it "
                               f"(the default: a fork server on Linux, spawn elsewhere)")
        return asked
    return "forkserver" if sys.platform == "linux" and "forkserver" in mp.get_all_start_methods() else "spawn"


def prestart(preload: list[str]) -> None:
    """Start the fork server now, in the background: it imports `preload` while this process loads the
    data, and the workers forked from it later start with those modules loaded. A no-op with spawn."""
    if start_method() != "forkserver":
        return
    import multiprocessing as mp
    from multiprocessing import forkserver

    mp.get_context("forkserver").set_forkserver_preload(list(preload))
    # The server would inherit this command's stdout and stderr and hold them open until it exits, a second
    # after this process (its own interpreter's exit): `tunectl tune --jobs 2 | jq` would wait for that.
    # It writes nothing of its own; each worker gets this command's stdio when it starts (_Stdio).
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved, null = [os.dup(1), os.dup(2)], os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        forkserver.ensure_running()  # a server already running (an earlier study in this process) is kept
    finally:
        for fd, n in zip(saved, (1, 2)):
            os.dup2(fd, n)
            os.close(fd)
        os.close(null)


def run_processes(target: Callable, payload: dict[str, Any], jobs: int, progress: Callable[[], Any],
                  study: str, storage_url: str) -> None:
    """Start `jobs` worker processes running `target(payload, worker, threads)`; wait, showing progress."""
    import multiprocessing as mp

    ctx = mp.get_context(start_method())
    threads = max(1, (os.cpu_count() or 1) // jobs)
    procs = [ctx.Process(target=_worker, args=(target, _Stdio(), dict(os.environ), payload, i, threads), daemon=False)
             for i in range(jobs)]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        if Stop.requested:
            _stop_workers(procs, study, storage_url)
            raise KeyboardInterrupt
        progress()
        for p in procs:
            p.join(timeout=1.0 / len(procs))
    progress()
    if all(p.exitcode == 2 for p in procs):
        raise RunError(f"study '{study}': every worker refused to start (see the messages above)")


class _Stdio:
    """This command's stdout and stderr, sent to a worker: one forked from a fork server that an earlier
    command of this process started (a test session) would write where that command's went."""

    def __reduce__(self):
        from multiprocessing.reduction import DupFd  # descriptors for the process being started

        fds = []
        for n in (1, 2):
            try:
                os.fstat(n)
                fds.append(DupFd(n))
            except OSError:  # closed (`tunectl tune >&-`): the worker keeps what it has
                fds.append(None)
        return _received, tuple(fds)


def _received(*fds) -> tuple[int | None, ...]:
    return tuple(None if fd is None else fd.detach() for fd in fds)


def _worker(target: Callable, stdio: tuple[int | None, ...], environ: dict[str, str], payload: dict[str, Any],
            worker: int, threads: int) -> None:
    """A worker process's first act: this command's stdout, stderr and environment (a fork server's worker
    starts with the server's own), then `target`."""
    os.environ.clear()
    os.environ.update(environ)
    for fd, n in zip(stdio, (1, 2)):
        if fd is not None and fd != n:  # (a spawned worker inherits them under their own numbers)
            os.dup2(fd, n)
            os.close(fd)
    target(payload, worker, threads)


def _stop_workers(procs, study: str, storage_url: str) -> None:
    """Ctrl-C reached the workers too (same process group); SIGTERM may not have: pass it on."""
    for p in procs:
        if p.is_alive():
            p.terminate()  # SIGTERM: the worker stops at its next batch and records its trial
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
            p.join()
    _fail_orphans({p.pid for p in procs}, study, storage_url)


def _fail_orphans(pids: set[int], name: str, storage_url: str) -> None:
    """Trials still RUNNING under a worker we just stopped are failed now, not left for the heartbeat."""
    storage = store.open_storage(storage_url, None)
    study = optuna.load_study(study_name=name, storage=storage)
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        if worker.startswith(f"{host}:") and int(worker.split(":")[-1]) in pids:
            _fail(study, storage, t.number, "interrupted")
