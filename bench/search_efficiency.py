"""How much compute does the default search (TPE + Hyperband) save over random search?

Three searches over the same space, at equal budgets counted in training epochs:

  default     TPE (tunectl's settings) + Hyperband pruning, as `tunectl tune` runs by default
  random      random search, every trial trained to the end
  tpe         TPE without pruning

Each search runs until it has trained `max(--budgets)` epochs (pruned trials count the epochs they
ran), three seeds each. For every budget B it prints the best dev error among the trials that
finished within B epochs (complete trials only: a model trained its whole course), and for the
default search the epochs it needed to match random search's best at the largest budget.
Target: the default matches random@400 within <= 160 epochs (2.5x less compute), median over seeds.

Everything counted is epochs, not seconds: the result does not depend on the machine's load, and
the searches may run side by side (--procs). Trials use objective.Objective, the very objective of
`tunectl tune`, on an in-memory Optuna storage.

    python bench/search_efficiency.py [--dataset digits|mnist|all] [--quick] [--seeds 3] [--procs 2]
           [--space searchspaces/mlp.yaml] [--mnist-dir DIR] [--train-fraction F] [--json OUT]

--quick: budgets 50, 100, 200 and two seeds. The default data set is the embedded digits; MNIST
(--dataset mnist or all) is the real test set (10,000 images) in --mnist-dir DIR, required then: a
folder with t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz) from any of torchvision's
MNIST mirrors; it is split 6,000 / 2,000 / 2,000, and --train-fraction trains on part of the 6,000.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BUDGETS = (50, 100, 200, 400)
METHODS = ("default", "random", "tpe")
MATCH_TARGET = 160  # epochs: 2.5x less than random search's 400


def search(task: dict) -> dict:
    """One search of one method and seed until its epoch budget is spent; the per-trial log."""
    import optuna
    import torch

    from tunectl import tune
    from tunectl.objective import Objective
    from tunectl.data import DataSettings, load_splits
    from tunectl.results import quiet_optuna
    from tunectl.space import load_space

    torch.set_num_threads(1)  # tiny models: one thread each, and --procs searches side by side
    quiet_optuna()
    space = load_space(task["space"])
    d = task["data"]
    splits = load_splits(DataSettings.from_dict(d, train_fraction=task["train_fraction"]))
    method, seed, budget = task["method"], task["seed"], task["budget"]
    sampler = tune.make_sampler("random" if method == "random" else "tpe", seed, space, False)
    pruner = tune.make_pruner("hyperband" if method == "default" else "none", space.epochs)
    with tempfile.TemporaryDirectory(prefix="tunectl-bench-") as root:
        settings = tune.TuneSettings(space, d, f"{method}-{seed}", root=root, seed=seed, keep=0, device="cpu")
        study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
        log: list[dict] = []

        def spend(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            epochs = trial.user_attrs.get("epochs_run", len(trial.user_attrs.get("curve", [])))
            used = (log[-1]["used"] if log else 0) + epochs
            log.append({"number": trial.number, "state": trial.state.name, "value": trial.value, "used": used})
            if used >= budget:
                study.stop()

        start = time.time()
        study.optimize(Objective(settings, splits, tune.base_config(settings), "cpu"), callbacks=[spend], catch=(Exception,),
                       gc_after_trial=False)
    return {**{k: task[k] for k in ("name", "method", "seed")}, "log": log, "seconds": time.time() - start}


def best_within(log: list[dict], budget: int) -> float | None:
    values = [r["value"] for r in log if r["used"] <= budget and r["state"] == "COMPLETE" and r["value"] is not None]
    return min(values) if values else None


def epochs_to_reach(log: list[dict], target: float | None) -> int | None:
    if target is None:
        return None
    for r in log:
        if r["state"] == "COMPLETE" and r["value"] is not None and r["value"] <= target:
            return r["used"]
    return None


def fmt(v) -> str:
    return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def report(name: str, results: list[dict], budgets: tuple[int, ...]) -> dict:
    seeds = sorted({r["seed"] for r in results})
    logs = {(r["method"], r["seed"]): r["log"] for r in results}
    print(f"\n== {name}: best dev error within each budget (epochs); per seed, then the median ==")
    print(f"{'method':<8} " + " ".join(f"{b:>24}" for b in budgets))
    table = {}
    for m in METHODS:
        row = []
        for b in budgets:
            vals = [best_within(logs[(m, s)], b) for s in seeds]
            known = [v for v in vals if v is not None]
            med = statistics.median(known) if len(known) == len(vals) else None
            table.setdefault(m, {})[b] = {"per_seed": vals, "median": med}
            row.append(f"{'/'.join(fmt(v) for v in vals)} ({fmt(med)})")
        print(f"{m:<8} " + " ".join(f"{c:>24}" for c in row))
    top = max(budgets)
    print(f"trials run: " + ", ".join(f"{m} {'/'.join(str(len(logs[(m, s)])) for s in seeds)}" for m in METHODS))
    needs = {}
    for m in ("default", "tpe"):
        per_seed = [epochs_to_reach(logs[(m, s)], best_within(logs[("random", s)], top)) for s in seeds]
        # a search that never matched counts as more than the budget, so the median stays honest
        med = statistics.median(n if n is not None else top + 1 for n in per_seed)
        needs[m] = {"per_seed": per_seed, "median": med}
        print(f"epochs {m} needed to match random@{top}: {'/'.join(fmt(n) if n else f'>{top}' for n in per_seed)} "
              f"(median {med if med <= top else f'>{top}'})")
    d = needs["default"]["median"]
    verdict = "met" if d <= MATCH_TARGET else "MISSED"
    print(f"target: default matches random@{top} within <= {MATCH_TARGET} epochs (median): {verdict}"
          f" ({top / d:.1f}x less compute)" if d <= top else f"target: {verdict}")
    return {"table": table, "epochs_to_match_random": needs, "target_met": d <= MATCH_TARGET}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=("digits", "mnist", "all"), default="digits")
    ap.add_argument("--quick", action="store_true", help="budgets 50/100/200, two seeds")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--procs", type=int, default=2, help="searches run side by side (epochs, not time, are counted)")
    ap.add_argument("--space", default=str(REPO / "searchspaces" / "mlp.yaml"))
    ap.add_argument("--mnist-dir", default=None, help="the MNIST test set's folder (required for mnist, all)")
    ap.add_argument("--train-fraction", type=float, default=1.0, help="MNIST: train on this part of the 6,000")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the numbers here")
    args = ap.parse_args()
    if args.dataset != "digits" and not args.mnist_dir:
        ap.error(f"--dataset {args.dataset} needs --mnist-dir DIR, the folder with the MNIST test set's files")
    budgets = BUDGETS[:3] if args.quick else BUDGETS
    seeds = range(args.seeds or (2 if args.quick else 3))
    data = {"digits": {"dataset": "digits"},
            "mnist": {"dataset": "mnist", "data_dir": args.mnist_dir, "split": "0.6,0.2,0.2"}}
    names = list(data) if args.dataset == "all" else [args.dataset]
    tasks = [{"name": n, "method": m, "seed": s, "budget": max(budgets), "space": args.space, "data": data[n],
              "train_fraction": args.train_fraction if n == "mnist" else 1.0}
             for n in names for s in seeds for m in METHODS]
    print(f"space {args.space}; budgets {budgets}; seeds {list(seeds)}; {len(tasks)} searches, {args.procs} at a time")
    start = time.time()
    if args.procs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.procs) as pool:
            results = pool.map(search, tasks, chunksize=1)
    else:
        results = [search(t) for t in tasks]
    out = {}
    for n in names:
        out[n] = report(n, [r for r in results if r["name"] == n], budgets)
    print(f"\n{time.time() - start:.0f} s in all")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"budgets": budgets, "results": out, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
