"""How many trials do N workers run under Optuna's MaxTrialsCallback(n, states=(COMPLETE, PRUNED))?

Why tunectl keeps its own gate (workers.Gate, workers.run_trials) instead: the callback counts
finished trials and stops a worker only after its trial ends, so N workers started together
overshoot by up to N - 1. Each worker here is a separate process on one SQLite study, running
`study.optimize(objective, callbacks=[MaxTrialsCallback(n, states=(COMPLETE, PRUNED))])` with a
one-second objective; all start at the same instant.

    python bench/max_trials_overshoot.py [--workers 2] [--trials 5] [--runs 3] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(url: str, start_at: float, n: int, seconds: float) -> None:
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="s", storage=url)
    while time.time() < start_at:
        time.sleep(0.01)

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        time.sleep(seconds)  # a short training
        return x

    study.optimize(objective, callbacks=[MaxTrialsCallback(n, states=(TrialState.COMPLETE, TrialState.PRUNED))])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.0, help="each trial's length")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)  # internal: URL START_AT
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker[0], float(args.worker[1]), args.trials, args.seconds)
        return 0
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            url = f"sqlite:///{Path(tmp) / f'run{run}.db'}"
            optuna.create_study(study_name="s", storage=url)
            start = time.time() + 8  # time for every worker to import optuna and load the study
            cmd = [sys.executable, __file__, "--trials", str(args.trials), "--seconds", str(args.seconds), "--worker", url]
            procs = [subprocess.Popen([*cmd, str(start)]) for _ in range(args.workers)]
            for proc in procs:
                proc.wait()
            ran = len(optuna.load_study(study_name="s", storage=url).trials)
            print(f"run {run}: {args.workers} workers, MaxTrialsCallback({args.trials}): {ran} trials "
                  f"(overshoot {ran - args.trials})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
