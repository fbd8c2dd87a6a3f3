"""Trials per minute with `tunectl tune --jobs 2` against `--jobs 1`, same trials, same machine.

Runs the real command (a subprocess each time, a fresh study each time) on a small space whose
trials all cost the same (only lr and momentum's beta are searched; the network is fixed), with
pruning off so every trial trains its full epochs. Rounds alternate the order (1,2 then 2,1) so
that drift in a shared machine's speed hits both alike. Two rates are printed:

  throughput  trials finished per minute once every worker has finished its first trial (which
              also pays one-time imports), read from the study: what an overnight run gets
  command     trials per minute of the whole command, process start-up and worker spawn included

A third configuration, jobs 1 with one torch thread (OMP_NUM_THREADS=1), separates the gain of
two processes from the cost of a 2-thread process whose threads wait on cores that others hold.
With --compare-spawn, a fourth: jobs 2 with spawned workers (TUNECTL_WORKER_START=spawn) instead
of the fork server's forks.

Worker start-up, less sensitive to the machine's load than the rates: for each worker, the time
from its process's start (read from /proc while the command runs) to the start of its first trial,
and from the command's start to that trial (for jobs 1 the command's own process is the worker);
and the CPU seconds of all the command's processes (what start-up costs a loaded machine).

Targets (issue 14): throughput ratio jobs2/jobs1 >= 1.8 and command ratio >= 1.4 on 2 cores. On a shared machine the ratio can exceed 2:
the scheduler shares the cores per process, so two workers get more of them than one process does
when others are busy; the load average before each run is printed for that reason.

    python bench/parallel.py [--trials 16] [--epochs 3] [--rounds 2] [--space FILE.yaml] [--jobs 2] [--compare-spawn]
                             [--no-two-threads]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from proctree import tree  # noqa: E402 - bench/ is the script's folder: on sys.path

SPACE = """\
model: mlp
dataset: digits
epochs: 3
params:
  lr:   {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
  beta: {type: float, low: 0.8, high: 0.99}
fixed:
  optimizer: momentum
  width: 128
  depth: 2
  batch_size: 16
"""


def cpu_of(pid: int) -> float | None:
    """A process's CPU seconds so far (user + system), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def started_at(pid: int) -> float | None:
    """A process's start as wall-clock time, from /proc/PID/stat (clock ticks since boot)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME) + ticks / os.sysconf("SC_CLK_TCK")


def run(space: Path, jobs: int, trials: int, epochs: int, root: Path, threads: int | None = None,
        start_method: str | None = None) -> dict:
    study = f"jobs{jobs}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "tunectl.cli", "tune", "--space", str(space), "--study", study, "--root", str(root),
           "--trials", str(trials), "--jobs", str(jobs), "--epochs", str(epochs), "--pruner", "none",
           "--sampler", "random", "--json"]
    env = {**os.environ, "TUNECTL_DEVICE": "cpu", **({"OMP_NUM_THREADS": str(threads)} if threads else {}),
           **({"TUNECTL_WORKER_START": start_method} if start_method else {})}
    t0, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    born: dict[int, float] = {}
    cpu: dict[int, float] = {}  # each process's CPU seconds, as last seen (the last 50 ms of each are missed)
    while proc.poll() is None:  # every process of the command, and when it started
        for pid in tree(proc.pid):
            if pid not in born and (at := started_at(pid)) is not None:
                born[pid] = at
            if (used := cpu_of(pid)) is not None:
                cpu[pid] = max(cpu.get(pid, 0.0), used)
        time.sleep(0.05)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"tunectl tune failed ({proc.returncode}): {err[-2000:]}")
    doc = json.loads(out)

    from tunectl.results import open_study

    done = sorted((t for t in open_study(study, root=root).get_trials(deepcopy=False)
                   if t.state.name in ("COMPLETE", "PRUNED")), key=lambda t: t.datetime_complete)
    # each worker's first trial also pays one-time imports (torch.optim loads torch._dynamo): the steady
    # state runs from the first worker's first finish to the last finish, counting the trials after it
    firsts: dict[str, object] = {}
    for t in done:
        firsts.setdefault(t.user_attrs.get("worker"), t)
    steady = [t for t in done if t not in firsts.values()]
    span = (done[-1].datetime_complete - done[0].datetime_complete).total_seconds()
    startup, to_first = [], []  # per worker: its process start -> its first trial; the command's start -> it
    for worker, first in firsts.items():
        pid = int(str(worker).rsplit(":", 1)[-1])
        begun = first.datetime_start.timestamp()
        to_first.append(begun - t0)
        if pid in born:
            startup.append(begun - born[pid])
    name = jobs if not threads else f"{jobs}t{threads}"
    return {"jobs": f"{name}{start_method}" if start_method else name, "finished": len(done), "span": span,
            "wall": wall, "fail": doc["states"]["FAIL"], "throughput": 60 * len(steady) / span,
            "command": 60 * len(done) / wall, "startup": statistics.mean(startup) if startup else float("nan"),
            "to_first": max(to_first), "cpu": sum(cpu.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2, help="the parallel run's --jobs")
    ap.add_argument("--space", default=None, help="default: a fixed-cost space (lr, beta) on digits")
    ap.add_argument("--compare-spawn", action="store_true", help="also jobs N with spawned workers")
    ap.add_argument("--no-two-threads", action="store_true",
                    help="leave out jobs 1 with two torch threads (on a loaded machine its threads wait on each "
                         "other for minutes); the ratios are then against jobs 1 with one thread")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tunectl-parallel-") as tmp:
        root = Path(tmp) / "studies"
        space = Path(args.space) if args.space else Path(tmp) / "space.yaml"
        if not args.space:
            space.write_text(SPACE)
        print(f"{os.cpu_count()} cores; {args.trials} trials of {args.epochs} epochs; space {args.space or 'fixed-cost'}; "
              f"load average {os.getloadavg()[0]:.1f} at the start")
        runs: list[dict] = []
        for r in range(args.rounds):
            order = [(1, None, None), (1, 1, None), (args.jobs, None, None)][args.no_two_threads:]
            order += [(args.jobs, None, "spawn")] if args.compare_spawn else []
            for jobs, threads, how in (order if r % 2 == 0 else order[::-1]):
                load = os.getloadavg()[0]  # other users' processes take shares of the cores too
                res = run(space, jobs, args.trials, args.epochs, root, threads, how)
                jobs = res["jobs"]
                runs.append(res)
                print(f"round {r + 1} jobs {jobs} (load {load:.1f}): {res['finished']} trials, steady span {res['span']:.1f} s, "
                      f"{res['wall']:.1f} s of command -> {res['throughput']:.1f} trials/min "
                      f"({res['command']:.1f} for the command), failed {res['fail']}; worker start-up "
                      f"{res['startup']:.2f} s, command start to every worker's first trial {res['to_first']:.2f} s; "
                      f"CPU time of all its processes {res['cpu']:.1f} s")
    configs = [1, "1t1", args.jobs][args.no_two_threads:] + ([f"{args.jobs}spawn"] if args.compare_spawn else [])
    base = "1t1" if args.no_two_threads else 1  # what the ratios divide by
    med = {(j, k): statistics.median(r[k] for r in runs if r["jobs"] == j)
           for j in configs for k in ("throughput", "command", "startup", "to_first", "cpu")}
    ratio = med[(args.jobs, "throughput")] / med[(base, "throughput")]
    cmd_ratio = med[(args.jobs, "command")] / med[(base, "command")]
    print(f"\nthroughput: jobs {args.jobs} {med[(args.jobs, 'throughput')]:.1f} trials/min, jobs {base} "
          f"{med[(base, 'throughput')]:.1f} -> ratio {ratio:.2f}x (target >= 1.8x: {'met' if ratio >= 1.8 else 'MISSED'})")
    one = med[("1t1", "throughput")]
    print(f"jobs 1 with one torch thread (OMP_NUM_THREADS=1): {one:.1f} trials/min -> jobs {args.jobs} / that "
          f"= {med[(args.jobs, 'throughput')] / one:.2f}x")
    print(f"command:    jobs {args.jobs} {med[(args.jobs, 'command')]:.1f} trials/min, jobs {base} "
          f"{med[(base, 'command')]:.1f} -> ratio {cmd_ratio:.2f}x (start-up included; target >= 1.4x: "
          f"{'met' if cmd_ratio >= 1.4 else 'MISSED'})")
    for j in configs:
        print(f"start-up, jobs {j}: a worker's process start to its first trial {med[(j, 'startup')]:.2f} s; "
              f"the command's start to every worker's first trial {med[(j, 'to_first')]:.2f} s; CPU time of the "
              f"whole command {med[(j, 'cpu')]:.1f} s")


if __name__ == "__main__":
    main()
