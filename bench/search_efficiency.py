"""How much compute does the default search (TPE + Hyperband) save over random search?

Searches over the same space, at equal budgets counted in training epochs:

  default     `tunectl tune` as it runs by default: the textbook defaults first (warmstart.defaults),
              then TPE (tunectl's settings) + Hyperband pruning
  random      random search, every trial trained to the end
  tpe         TPE without pruning
  cold        the default without the textbook defaults first (what --no-defaults-first gives)
  and, with --methods, variants of the sampler's and pruner's settings (VARIANTS below), each with the
  defaults first, so that a setting is kept only when this benchmark shows it is better; `halving` is
  successive halving (one bracket), `sgdm-second` enqueues SGD + momentum 0.9 at lr 0.01 after the defaults

Each search runs until it has trained `max(--budgets)` epochs (pruned trials count the epochs they
ran), three seeds each. For every budget B it prints the best dev error among the trials that
finished within B epochs (complete trials only: a model trained its whole course), and for the
default search the epochs it needed to match random search's best at the largest budget: strictly (a
dev error at or below it) and within noise (less than noise.Z standard errors of the difference above it,
the leaderboard's "≈ best" rule: on 2,000 dev examples at 8 % error one standard error is 0.006).
Target: the default matches random@400 within <= 120 epochs (median over seeds), and its best dev error
within 50 epochs is <= 0.12 on MNIST (median). Each best value is printed with its standard error
(binomial, from the dev split's size: noise.py), so a difference within noise is seen as one.

Every search of one seed has the study name bench-SEED: Hyperband assigns trials to its brackets by a hash
of the study's name, so the methods meet the same brackets and a run repeats exactly. --stop-at-match
runs random search first and ends each other search once it has matched random's best and run 50 epochs
(its best at larger budgets is then '-'); --reuse JSON takes finished searches from an earlier --json run.

Everything counted is epochs, not seconds: the result does not depend on the machine's load, and
the searches may run side by side (--procs). Trials use objective.Objective, the very objective of
`tunectl tune`, on an in-memory Optuna storage.

    python bench/search_efficiency.py [--dataset digits|mnist|all] [--quick] [--seeds 3] [--procs 2]
           [--space searchspaces/mlp.yaml] [--mnist-dir DIR] [--train-fraction F] [--json OUT]
           [--methods default,random,tpe,cold,...] [--budgets 50,100,200,400] [--stop-at-match]
           [--reuse JSON] [--log]

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
MATCH_TARGET = 120  # epochs: 3.3x less than random search's 400
EARLY, EARLY_TARGET = 50, 0.12  # the best dev error within 50 epochs (MNIST's target)
# name: (sampler options over tunectl's TPE, pruner options over tunectl's Hyperband or None: no pruning,
#        the textbook defaults first)
VARIANTS = {
    "default": ({}, {}, True),
    "random": (None, None, False),
    "tpe": ({}, None, False),
    "cold": ({}, {}, False),
    "tpe-startup5": ({"n_startup_trials": 5}, {}, True),
    "tpe-startup20": ({"n_startup_trials": 20}, {}, True),
    "tpe-independent": ({"multivariate": False, "group": False}, {}, True),
    "hb-rf2": ({}, {"reduction_factor": 2}, True),
    "hb-rf4": ({}, {"reduction_factor": 4}, True),
    "hb-min1": ({}, {"min_resource": 1}, True),  # the default until issue 14's last round (from 1 epoch)
    "median": ({}, "median", True),
    "halving": ({}, "halving", True),  # one bracket: the defaults' curve is the bar every later trial meets
}
# a second practitioner's trial enqueued after the defaults (the defaults' other values): SGD with momentum
# 0.9 at lr 0.01, the classic dense-net recipe (the optimizer most papers train with)
SECOND = {"sgdm-second": {"optimizer": "momentum", "lr": 0.01, "one_minus_beta": 0.1}}
VARIANTS.update({name: ({}, {}, True) for name in SECOND})


def make(method: str, seed: int, space, tune):
    """The sampler and pruner of `method` (VARIANTS), built from tunectl's own (tune.make_sampler/make_pruner)."""
    import optuna

    sampler_opts, pruner_opts, first = VARIANTS[method]
    if sampler_opts is None:
        sampler = tune.make_sampler("random", seed, space, False)
    elif not sampler_opts:
        sampler = tune.make_sampler("tpe", seed, space, False)
    else:  # tunectl's TPE with these options changed
        opts = {"seed": seed, "multivariate": True, "group": True, **sampler_opts}
        sampler = optuna.samplers.TPESampler(**opts)
    if pruner_opts is None:
        pruner = tune.make_pruner("none", space.epochs)
    elif isinstance(pruner_opts, str):  # another of tunectl's pruners (median, halving)
        pruner = tune.make_pruner(pruner_opts, space.epochs)
    elif not pruner_opts:
        pruner = tune.make_pruner("hyperband", space.epochs)
    else:
        opts = {"min_resource": max(1, min(3, space.epochs // 3)), "max_resource": space.epochs, "reduction_factor": 3,
                **pruner_opts}
        pruner = optuna.pruners.HyperbandPruner(**opts)
    return sampler, pruner, first


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
    sampler, pruner, first = make(method, seed, space, tune)
    with tempfile.TemporaryDirectory(prefix="tunectl-bench-") as root:
        settings = tune.TuneSettings(space, d, f"{method}-{seed}", root=root, seed=seed, keep=0, device="cpu",
                                     sampler="tpe", defaults_first=first)
        # a fixed name: Hyperband assigns trials to brackets by a hash of the study's name and the trial's
        # number, so an unnamed study (a random name) gives another search on every run; one name per seed
        # gives every method the same brackets (a paired comparison) and the same result on every run
        study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner, study_name=f"bench-{seed}")
        tune.enqueue_starts(study, settings, [], True, print)  # what `tunectl tune` does for a new study
        if method in SECOND:
            from tunectl import warmstart

            base = {k: v for k, v in warmstart.defaults(space).params.items() if not k.startswith("one_minus_beta")}
            study.enqueue_trial({**base, **SECOND[method]}, user_attrs={"enqueued": method})
        log: list[dict] = []

        def spend(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            used = (log[-1]["used"] if log else 0) + epochs_run(trial)
            log.append({"number": trial.number, "state": trial.state.name, "value": trial.value, "used": used,
                        "se": trial.user_attrs.get("dev_error_se"), "params": trial.params})
            if task.get("log"):
                print(f"    {method} seed {seed} #{trial.number} {trial.state.name.lower()} {fmt(trial.value)} "
                      f"after {epochs_run(trial)} epochs (used {used}): {short_params(trial.params)}", flush=True)
            stop_below = task.get("stop_below")  # --stop-at-match: matched random@top, and past EARLY epochs
            matched = stop_below is not None and any(r["state"] == "COMPLETE" and r["value"] is not None and
                                                     r["value"] <= stop_below for r in log)
            if used >= budget or (matched and used >= EARLY):
                study.stop()

        start = time.time()
        study.optimize(Objective(settings, splits, tune.base_config(settings), "cpu"), callbacks=[spend], catch=(Exception,),
                       gc_after_trial=False)
    stopped = log[-1]["used"] if log and log[-1]["used"] < budget else None  # --stop-at-match ended it early
    return {**{k: task[k] for k in ("name", "method", "seed")}, "log": log, "stopped_at": stopped,
            "seconds": time.time() - start}


def epochs_run(trial) -> int:
    """The epochs a trial trained: one reported dev error per epoch (Optuna's intermediate values), plus the
    epoch that diverged (a NaN is not reported to the pruner). A finished trial that trained none is a bug here."""
    n = len(trial.intermediate_values) + (trial.user_attrs.get("reason") == "diverged")
    if n == 0 and trial.state.name in ("COMPLETE", "PRUNED"):
        raise RuntimeError(f"trial {trial.number} ({trial.state.name}) reported no epoch: cannot count the budget")
    return n


def short_params(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def best_within(log: list[dict], budget: int) -> float | None:
    if any(r["state"] == "UNKNOWN" and r["used"] <= budget for r in log):
        return None  # the search stopped before this budget (--stop-at-match)
    values = [r["value"] for r in log if r["used"] <= budget and r["state"] == "COMPLETE" and r["value"] is not None]
    return min(values) if values else None


def best_se(log: list[dict], budget: int) -> float | None:
    """The standard error of the best value within `budget` (that trial's dev_error_se)."""
    rows = [r for r in log if r["used"] <= budget and r["state"] == "COMPLETE" and r["value"] is not None]
    if best_within(log, budget) is None:
        return None
    return min(rows, key=lambda r: r["value"]).get("se") if rows else None


def epochs_to_reach(log: list[dict], target: float | None) -> int | None:
    if target is None:
        return None
    for r in log:
        if r["state"] == "COMPLETE" and r["value"] is not None and r["value"] <= target:
            return r["used"]
    return None


def epochs_to_noise(log: list[dict], target: float | None, target_se: float | None) -> int | None:
    """The epochs until a complete trial is within noise of `target` (noise.within_noise: less than Z standard
    errors of the difference above it, the leaderboard's "≈ best" rule)."""
    from tunectl.noise import within_noise

    for r in log:
        if r["state"] == "COMPLETE" and r["value"] is not None and within_noise(r["value"], target, r["se"], target_se):
            return r["used"]
    return None


def fmt(v) -> str:
    return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def report(name: str, results: list[dict], budgets: tuple[int, ...], methods: tuple[str, ...] = METHODS) -> dict:
    seeds = sorted({r["seed"] for r in results})
    # a search that --stop-at-match ended early: its best at a budget beyond its end is unknown (None)
    logs = {(r["method"], r["seed"]): [*r["log"], *([{"used": r["stopped_at"] + 1, "state": "UNKNOWN", "value": None}]
                                                     if r.get("stopped_at") else [])] for r in results}
    print(f"\n== {name}: best dev error within each budget (epochs); the median over seeds ± the standard error "
          f"of that median seed's best; then each seed ==")
    width = 17 + 7 * len(seeds)
    print(f"{'method':<16} " + " ".join(f"{b:>{width}}" for b in sorted({*budgets, EARLY})))
    table = {}
    for m in methods:
        row = []
        for b in sorted({*budgets, EARLY}):
            vals = [best_within(logs[(m, s)], b) for s in seeds]
            ses = [best_se(logs[(m, s)], b) for s in seeds]
            known = [v for v in vals if v is not None]
            med = statistics.median(known) if len(known) == len(vals) else None
            med_se = next((se for v, se in zip(vals, ses) if v == med), None) if med is not None else None
            table.setdefault(m, {})[b] = {"per_seed": vals, "per_seed_se": ses, "median": med, "median_se": med_se}
            cell = f"{fmt(med)}±{fmt(med_se)[1:] if med_se is not None else '-'}"
            row.append(f"{cell} ({'/'.join(fmt(v)[1:] if v is not None else '-' for v in vals)})")
        print(f"{m:<16} " + " ".join(f"{c:>{width}}" for c in row))
    top = max(budgets)
    print(f"trials run: " + ", ".join(f"{m} {'/'.join(str(sum(r['state'] != 'UNKNOWN' for r in logs[(m, s)])) for s in seeds)}" for m in methods))
    needs = {}
    for m in [m for m in methods if m != "random"]:
        per_seed = [epochs_to_reach(logs[(m, s)], best_within(logs[("random", s)], top)) for s in seeds]
        # a search that never matched counts as more than the budget, so the median stays honest
        med = statistics.median(n if n is not None else top + 1 for n in per_seed)
        needs[m] = {"per_seed": per_seed, "median": med}
        print(f"epochs {m} needed to match random@{top}: {'/'.join(fmt(n) if n else f'>{top}' for n in per_seed)} "
              f"(median {med if med <= top else f'>{top}'})")
    from tunectl import noise

    for m in [m for m in methods if m != "random"]:
        # the same race judged with the standard errors: a best within noise of random's is a match
        per_seed = [epochs_to_noise(logs[(m, s)], best_within(logs[("random", s)], top), best_se(logs[("random", s)], top))
                    for s in seeds]
        med = statistics.median(n if n is not None else top + 1 for n in per_seed)
        needs[m].update({"within_noise_per_seed": per_seed, "within_noise_median": med})
        print(f"epochs {m} needed to come within noise of random@{top} (< {noise.Z:g} SE of the difference above it): "
              f"{'/'.join(fmt(n) if n else f'>{top}' for n in per_seed)} (median {med if med <= top else f'>{top}'})")
    d = needs["default"]["median"]
    verdict = "met" if d <= MATCH_TARGET else "MISSED"
    print(f"target: default matches random@{top} within <= {MATCH_TARGET} epochs (median): {verdict}"
          f" ({top / d:.1f}x less compute)" if d <= top else f"target: {verdict}")
    early = table["default"][EARLY]["median"]
    print(f"target: default's best within {EARLY} epochs <= {EARLY_TARGET} (median; MNIST's): "
          f"{fmt(early)} {'met' if early is not None and early <= EARLY_TARGET else 'MISSED'}")
    return {"table": table, "epochs_to_match_random": needs, "target_met": d <= MATCH_TARGET,
            "early_best": early, "early_target_met": early is not None and early <= EARLY_TARGET}


def done(r: dict, k: int, n: int) -> None:
    best = best_within(r["log"], 10**9)
    print(f"  [{k}/{n}] {r['name']} {r['method']} seed {r['seed']}: {len(r['log'])} trials, best {fmt(best)}, "
          f"{r['seconds']:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=("digits", "mnist", "all"), default="digits")
    ap.add_argument("--quick", action="store_true", help="budgets 50/100/200, two seeds")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds FIRST, FIRST+1, ... (more seeds for a close race)")
    ap.add_argument("--procs", type=int, default=2, help="searches run side by side (epochs, not time, are counted)")
    ap.add_argument("--space", default=str(REPO / "searchspaces" / "mlp.yaml"))
    ap.add_argument("--mnist-dir", default=None, help="the MNIST test set's folder (required for mnist, all)")
    ap.add_argument("--train-fraction", type=float, default=1.0, help="MNIST: train on this part of the 6,000")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the numbers here")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated, from: {', '.join(VARIANTS)} (default and random are always run)")
    ap.add_argument("--stop-at-match", action="store_true",
                    help="run random search first; every other search stops once it has matched random's best at "
                         "the largest budget and run 50 epochs (its best at larger budgets is then shown as '-')")
    ap.add_argument("--reuse", default=None, metavar="JSON",
                    help="take the searches that an earlier --json run finished in full (same data set, method and "
                         "seed) from that file instead of running them again, e.g. random search's")
    ap.add_argument("--log", action="store_true", help="print every trial: its state, dev error, epochs and params")
    ap.add_argument("--budgets", default=None, help="comma-separated epoch budgets, e.g. 50,100,200,400")
    args = ap.parse_args()
    if args.dataset != "digits" and not args.mnist_dir:
        ap.error(f"--dataset {args.dataset} needs --mnist-dir DIR, the folder with the MNIST test set's files")
    methods = tuple(dict.fromkeys(["default", "random", *args.methods.split(",")]))
    unknown = [m for m in methods if m not in VARIANTS]
    if unknown:
        ap.error(f"--methods: unknown {unknown[0]!r}; use some of {', '.join(VARIANTS)}")
    budgets = tuple(int(b) for b in args.budgets.split(",")) if args.budgets else BUDGETS[:3] if args.quick else BUDGETS
    seeds = range(args.first_seed, args.first_seed + (args.seeds or (2 if args.quick else 3)))
    data = {"digits": {"dataset": "digits"},
            "mnist": {"dataset": "mnist", "data_dir": args.mnist_dir, "split": "0.6,0.2,0.2"}}
    names = list(data) if args.dataset == "all" else [args.dataset]
    tasks = [{"name": n, "method": m, "seed": s, "budget": max(budgets), "space": args.space, "data": data[n],
              "train_fraction": args.train_fraction if n == "mnist" else 1.0, "log": args.log}
             for n in names for s in seeds for m in methods]
    print(f"space {args.space}; budgets {budgets}; seeds {list(seeds)}; {len(tasks)} searches, {args.procs} at a time")
    start = time.time()
    results: list[dict] = []

    def finished(r: dict) -> list[dict]:
        """Record a search; with --stop-at-match, random's result releases the other searches of its seed."""
        results.append(r)
        done(r, len(results), len(tasks))
        if args.json_out:  # as each search ends: a long run that is cut short keeps what it measured
            Path(args.json_out).write_text(json.dumps({"budgets": budgets, "partial": True, "runs": results}))
        if not args.stop_at_match or r["method"] != "random":
            return []
        target = best_within(r["log"], max(budgets))
        return [{**t, "stop_below": target} for t in tasks
                if t["name"] == r["name"] and t["seed"] == r["seed"] and t["method"] != "random"]

    # random first (its best is what the others must match), then the rest
    first = [t for t in tasks if t["method"] == "random"] if args.stop_at_match else tasks
    if args.reuse:  # a search is a function of its data, method, seed and budget: the same one need not run twice
        old = {(r["name"], r["method"], r["seed"]): r for r in json.loads(Path(args.reuse).read_text())["runs"]
               if not r.get("stopped_at") and r["log"] and r["log"][-1]["used"] >= max(budgets)}
        kept = [t for t in first if (t["name"], t["method"], t["seed"]) in old]
        first = [t for t in first if t not in kept]
        print(f"reused from {args.reuse}: {', '.join(t['method'] + ' seed ' + str(t['seed']) for t in kept) or 'none'}")
        for t in kept:
            first += finished({**old[(t["name"], t["method"], t["seed"])], "reused": True})
    if args.procs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.procs) as pool:
            pending = [pool.apply_async(search, (t,)) for t in first]
            while pending:  # each search as it ends: a long run shows progress
                ready = next((p for p in pending if p.ready()), None)
                if ready is None:
                    time.sleep(0.5)
                    continue
                pending.remove(ready)
                pending += [pool.apply_async(search, (t,)) for t in finished(ready.get())]
    else:
        queue = list(first)
        while queue:
            queue += finished(search(queue.pop(0)))
    out = {}
    for n in names:
        out[n] = report(n, [r for r in results if r["name"] == n], budgets, methods)
    print(f"\n{time.time() - start:.0f} s in all")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"budgets": budgets, "results": out, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
