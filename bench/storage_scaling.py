"""Trials per minute with 1, 2 and 3 worker processes, on PostgreSQL and on the default SQLite file.

Each worker is a separate `tunectl tune` process (as on separate machines; `--jobs 1`), all
on one fresh study of the same small space: digits, a one-layer MLP of fixed size, lr
searched by TPE, 3 epochs and no pruning, so that every trial costs the same compute and
the difference between storages is the storage. A process spends seconds importing torch before
its first trial, so the rate is measured only while every worker is in its stride: the
window opens when the last worker finishes its first trial and closes --window seconds later
(then the workers are stopped); the trials that finished (complete or pruned) in it count.

    python bench/storage_scaling.py [--window 60] [--rounds 2] [--workers 1 2 3] [--pg-url URL]

Without --pg-url (or $TUNECTL_PG_URL) a throwaway PostgreSQL server is started on loopback
(tests/pg.py) with the default durability settings (fsync on).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


SPACE = """\
model: mlp
dataset: digits
epochs: 3
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
fixed: {depth: 1, width: 64, batch_size: 64}
"""


def run(storage: str | None, workers: int, window: float, folder: Path) -> dict:
    from tunectl.space import load_space
    from tunectl.tune import TuneSettings, prepare
    from tunectl.results import open_study

    name, root = f"bench-{uuid.uuid4().hex[:6]}", folder / "studies"
    (folder / "space.yaml").write_text(SPACE)
    prepare(TuneSettings(load_space(folder / "space.yaml"), {"dataset": "digits", "data_dir": "data", "split_seed": 0},
                         name, storage, str(root), pruner="none"))
    cmd = [sys.executable, "-m", "tunectl.cli", "tune", "--study", name, "--root", str(root), "--jobs", "1", "--json"]
    cmd += ["--storage", storage] if storage else ["--space", str(folder / "space.yaml"), "--pruner", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=folder)
             for _ in range(workers)]
    study = open_study(name, storage, root)

    def first_ends() -> dict:
        firsts: dict = {}
        for t in study.get_trials(deepcopy=False):
            w = t.user_attrs.get("worker")
            if w and t.datetime_complete:
                firsts[w] = min(firsts.get(w, t.datetime_complete), t.datetime_complete)
        return firsts

    # every worker past its one-time costs (imports; the first optimizer imports torch._dynamo)
    while len(first_ends()) < workers:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(next(p for p in procs if p.poll() is not None).communicate()[1])
        time.sleep(0.5)
    start = max(first_ends().values())
    time.sleep(max(0.0, window - (datetime.now() - start).total_seconds()))
    end = datetime.now()
    for p in procs:
        p.send_signal(signal.SIGTERM)  # like Ctrl-C: the running trial is recorded as interrupted
    for p in procs:
        p.communicate()
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and start <= t.datetime_complete <= end]
    seconds = (end - start).total_seconds()
    # what a trial costs beyond its training: Optuna's bookkeeping in the storage, the checkpoint
    outside = [(t.datetime_complete - t.datetime_start).total_seconds() - t.user_attrs["seconds"] for t in done]
    return {"storage": "postgresql" if storage else "sqlite (default)", "workers": workers,
            "trials": len(done), "seconds": round(seconds, 1), "trials_per_minute": round(60 * len(done) / seconds, 1),
            "ms_outside_fit": round(1000 * statistics.median(outside)) if outside else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=float, default=60, help="seconds each configuration runs in stride")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--rounds", type=int, default=2, help="repeat the whole grid; the table shows each run")
    ap.add_argument("--pg-url", default=os.environ.get("TUNECTL_PG_URL"))
    args = ap.parse_args()
    server = None
    url = args.pg_url
    if not url:
        import pg

        server = pg.start(fast=False)
        url = server.url
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="tunectl-bench-") as tmp:
            for _ in range(args.rounds):
                for n in args.workers:  # interleaved, so drift in the machine's load hits both alike
                    for storage in (url, None):
                        row = run(storage, n, args.window, Path(tmp))
                        row["load_avg"] = round(os.getloadavg()[0], 1)
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    finally:
        if server:
            server.stop()
    print(f"\n{'storage':<18} {'workers':>7} {'trials':>6} {'seconds':>7} {'trials/min':>10} {'ms/trial outside fit':>20} "
          f"{'load':>5}")
    for r in sorted(rows, key=lambda r: (r["storage"], r["workers"])):
        print(f"{r['storage']:<18} {r['workers']:>7} {r['trials']:>6} {r['seconds']:>7} {r['trials_per_minute']:>10} "
              f"{r['ms_outside_fit']:>20} {r['load_avg']:>5}")


if __name__ == "__main__":
    main()
