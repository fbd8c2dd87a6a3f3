"""The read side of studies: open one, turn its trials into plain records, summarize, list, pick a trial.

Everything here reads; nothing starts a trial or writes to a study. The CLI, `evaluate`,
`diagnose` and the HTML report read studies through this module, not the tuning machinery.
"""

from __future__ import annotations

import math
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunectl import noise, studies
from tunectl.errors import StudyError
from tunectl import storage as store

ATTR = "tunectl"  # the study user attribute holding everything a worker needs (space, data, split, ...)
RECHECK = "recheck"  # study user attrs recheck:<trial>:<seed>: one re-training of a trial with a new seed (recheck.py)


def quiet_optuna() -> None:
    # Optuna logs each failed trial with its traceback; we record and show the message instead
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


_STORAGES: "weakref.WeakKeyDictionary[optuna.Study, Any]" = weakref.WeakKeyDictionary()  # study -> its storage


def open_study(name: str, storage: str | None = None, root: str | Path = studies.ROOT) -> optuna.Study:
    quiet_optuna()
    studies.check_root(root)
    url = storage or studies.default_storage_url(name, Path(root))
    st = store.open_storage(url, None, create=False)
    try:
        study = optuna.load_study(study_name=name, storage=st)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
        raise StudyError(f"no study '{name}' in {store.mask_url(url)}" + (f"; studies there: {', '.join(names)}" if names else "")) from None
    _STORAGES[study] = st  # Optuna keeps a study's storage private; its checkpoints are listed there
    return study


def storage_of(study: optuna.Study):
    """The storage `open_study` opened `study` on (None for a study opened otherwise)."""
    return _STORAGES.get(study)


def _context(study: optuna.Study) -> dict[str, Any]:
    """What every record of a study is rebuilt from: the study's record (space, base config, split)
    and its listed checkpoints."""
    from tunectl import checkpoints

    meta = study.user_attrs.get(ATTR) or {}
    st = storage_of(study)
    return {"meta": meta, "kept": checkpoints.kept(st, study.study_name) if st is not None else {},
            "n_train": (meta.get("manifest") or {}).get("sizes", {}).get("train")}


def trial_records(study: optuna.Study, folder: str | Path | None = None) -> list[dict[str, Any]]:
    """Every trial of `study` as a plain record (trial_record), in trial-number order, with its standard
    errors and, for a rechecked trial, its results over new seeds (`recheck`); `folder` is the study
    folder, where each trial's whole curve is (without it: rebuilt from the trial)."""
    ctx = _context(study)
    found = rechecks(study.user_attrs)  # a rechecked trial: its results over new seeds
    records = [trial_record(t, ctx, folder) for t in study.get_trials(deepcopy=False)]
    for r in records:
        r["recheck"] = found.get(r["number"])
    return records


def trial_record(t: FrozenTrial, ctx: dict[str, Any] | None = None, folder: str | Path | None = None) -> dict[str, Any]:
    """One trial as a plain record. A trial keeps in its user attributes only what Optuna does not
    hold already (each epoch's train error, the best epoch, the reason it stopped, its worker);
    the rest is rebuilt: the params from the trial's params, the config from them and the study's
    record, the dev error from the value or the intermediate values, the curve from trials/N/curve.json
    (or the trial). Studies made before that kept everything in user attributes: read as they are.
    A classification trial recorded before standard errors were stored gets its binomial ones from
    the split's sizes."""
    u = t.user_attrs
    ctx = ctx or {"meta": {}, "kept": {}, "n_train": None}
    meta = ctx["meta"]
    params = u["params"] if "params" in u else _params_of(t, meta)
    curve = u["curve"] if "curve" in u else _curve_of(t, folder, ctx["n_train"])
    # no config before the trial has chosen its params (a trial Optuna just made, or one killed then)
    config = u["config"] if "config" in u else _config_of(params, meta) if t.params else None
    reported = [v for v in t.intermediate_values.values() if v is not None and math.isfinite(v)]
    dev = u["dev_error"] if "dev_error" in u else t.value if t.state == TrialState.COMPLETE else (
        min(reported) if reported else None)
    kept = ctx["kept"].get(t.number) or {}
    bs = u.get("batch_size_used", (config or {}).get("batch_size"))
    seconds = u["seconds"] if "seconds" in u else t.duration.total_seconds() if t.duration else None
    record = {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "params": params,
        "config": config,
        "train_error": u.get("train_error"),
        "dev_error": dev,
        "best_epoch": u.get("best_epoch"),
        "epochs": u.get("epochs_run", len(curve)),
        "batch_size_used": bs,
        "seconds": seconds,
        "reason": u.get("reason", "worker died" if t.state == TrialState.FAIL else t.state.name.lower()),
        "curve": curve,
        "checkpoint": kept.get("checkpoint", u.get("checkpoint")),
        "artifact": kept.get("artifact", u.get("artifact")),
        "retry_of": u.get("retry_of"),
        "enqueued": u.get("enqueued"),  # warmstart: where a first trial came from (defaults, a file, a study)
        "enqueued_why": u.get("enqueued_why"),
        "dev_error_se": u.get("dev_error_se"),
        "train_error_se": u.get("train_error_se"),
        "worker": u.get("worker"),
        "start": t.datetime_start.isoformat(sep=" ") if t.datetime_start else None,
        "end": t.datetime_complete.isoformat(sep=" ") if t.datetime_complete else None,
    }
    manifest = (meta or {}).get("manifest") or {}
    if manifest.get("task") not in (None, "regression"):
        sizes = manifest.get("sizes") or {}
        for key, split in (("dev_error_se", "dev"), ("train_error_se", "train")):
            if record[key] is None:
                record[key] = noise.binomial_se(record[key.removesuffix("_se")], sizes.get(split))
    return record


def rechecks(attrs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Trial number -> its recheck (study user attrs recheck:<trial>:<seed>): each seed's result, the
    mean dev error over the new seeds, its spread (sample standard deviation) and their number."""
    import statistics

    by_trial: dict[int, list[dict[str, Any]]] = {}
    for key, value in attrs.items():
        if key.startswith(f"{RECHECK}:") and isinstance(value, dict) and isinstance(value.get("trial"), int):
            by_trial.setdefault(value["trial"], []).append(value)
    out = {}
    for n, rows in by_trial.items():
        rows.sort(key=lambda r: r.get("seed", 0))
        errors = [r["dev_error"] for r in rows if isinstance(r.get("dev_error"), (int, float)) and r["dev_error"] == r["dev_error"]]
        out[n] = {"seeds": rows, "n": len(errors), "mean": statistics.fmean(errors) if errors else None,
                  "std": statistics.stdev(errors) if len(errors) > 1 else None}
    return out


def rechecked_winner(found: dict[int, dict[str, Any]]) -> int | None:
    """The rechecked trial with the lowest mean dev error, among those rechecked with the most seeds
    (a trial stopped after one seed does not win on it). None when no trial was rechecked."""
    ready = {n: r for n, r in found.items() if r["mean"] is not None}
    if not ready:
        return None
    most = max(r["n"] for r in ready.values())
    return min((n for n, r in ready.items() if r["n"] == most), key=lambda n: (ready[n]["mean"], n))


def mark_noise(board: list[dict[str, Any]]) -> None:
    """Each leaderboard row (best first) gets `within_noise`: less than two standard errors of the
    difference above the best (noise.within_noise), so the race between them is not decided."""
    if not board:
        return
    best = board[0]
    for r in board:
        r["within_noise"] = r is not best and noise.within_noise(r["dev_error"], best["dev_error"],
                                                                 r.get("dev_error_se"), best.get("dev_error_se"))


def _params_of(t: FrozenTrial, meta: dict[str, Any]) -> dict[str, Any]:
    """The trial's values by the space's names (space.chosen_from_params: one_minus_beta -> beta)."""
    from tunectl.space import chosen_from_params

    specs = (meta.get("space") or {}).get("params")
    return chosen_from_params(specs, t.params) if specs else dict(t.params)


def _config_of(params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any] | None:
    """The trial's TrainConfig: the study's base config, its space's fixed values, the trial's params."""
    from tunectl.config import from_dict
    from tunectl.errors import TunectlError
    from tunectl.space import Space, trial_config

    sp, base = meta.get("space"), meta.get("base")
    if not sp or base is None:
        return None
    try:
        space = Space(sp.get("params") or {}, sp.get("fixed") or {}, sp.get("model"), sp.get("dataset"),
                      sp.get("epochs", 20), "study", sp.get("model_sha256"), tuple(meta.get("builder_params") or ()))
        return trial_config(space, params, from_dict(base)).to_dict()
    except (TunectlError, TypeError, ValueError, KeyError):
        return None  # a record this version cannot rebuild: shown without a config, never a traceback


def _curve_of(t: FrozenTrial, folder: str | Path | None, n_train: int | None) -> list[dict[str, Any]]:
    """trials/N/curve.json when this machine has the study folder, else the trial's own record: its
    dev error per epoch (intermediate values) and train error per epoch (user attribute train_errors)."""
    if folder is not None:
        rows = studies.read_curve(Path(folder), t.number)
        if rows is not None:
            return rows
    train = t.user_attrs.get("train_errors")
    if isinstance(train, dict):  # {"wrong": [...], "of": n}: counts of misclassified examples
        n = train.get("of") or n_train or 1
        train = [None if w is None else w / n for w in train.get("wrong") or []]
    train = train if isinstance(train, list) else []
    steps = max([len(train), *t.intermediate_values.keys()], default=0)
    return [{"epoch": e, "train_error": train[e - 1] if e <= len(train) else None,
             "dev_error": t.intermediate_values.get(e), "train_loss": None} for e in range(1, steps + 1)]


RUN_PREFIX = "tune run "  # study user attributes, one per `tunectl tune` that ran the study (tune.environment)


def runs(study: optuna.Study) -> list[dict[str, Any]]:
    """Every `tunectl tune` that ran the study (creator, resumes, joined workers), oldest first."""
    found = [v for k, v in study.user_attrs.items() if k.startswith(RUN_PREFIX) and isinstance(v, dict)]
    return sorted(found, key=lambda v: (str(v.get("time")), str(v.get("host")), str(v.get("pid"))))


LOOK_PREFIX = "test look "  # study user attributes, one per look at the test set: "test look <time> <host>:<pid> <id>"


def test_looks(study: optuna.Study | None, folder: str | Path) -> list[dict[str, Any]]:
    """Every look at the test set, oldest first: those recorded in the study (every machine's, on a
    shared storage) and this machine's evaluations.json (older looks, made before the study recorded
    them), each once. A damaged evaluations.json is refused (studies.read_evaluations)."""
    recorded = [v for k, v in (study.user_attrs if study is not None else {}).items()
                if k.startswith(LOOK_PREFIX) and isinstance(v, dict)]
    merged = {str(v.get("id") or (v.get("time"), v.get("trial"), v.get("test_error"))): v
              for v in [*studies.read_evaluations(Path(folder)), *recorded]}
    return sorted(merged.values(), key=lambda v: (str(v.get("time")), _number(v.get("at")), str(v.get("id"))))


def _number(value: Any) -> float:
    """A look's `at` (seconds since the epoch), 0 for looks recorded before it was."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def pick_trial(records: list[dict[str, Any]], study: str, number: int | None = None,
               complete: bool = False) -> dict[str, Any]:
    """The trial a command works on: `number`, or the best complete one (the lowest dev error, then
    the earliest), unless a recheck (`tunectl recheck`) named a winner over new seeds: then that one, marked
    `picked_by: recheck`. With `complete`, a chosen trial that did not complete is refused. One rule for
    `diagnose`, `evaluate`, `export` and the report."""
    done = sorted((r for r in records if r["state"] == "COMPLETE"), key=lambda r: (r["value"], r["number"]))
    if number is None:
        if not done:
            raise StudyError(f"study '{study}' has no complete trial yet; let it run (`tunectl tune --study {study}`), "
                             f"or pick one with --trial N")
        # a recheck over new seeds outranks one lucky run: its winner, when there is one
        winner = rechecked_winner({r["number"]: r["recheck"] for r in done if r.get("recheck")})
        if winner is not None:
            return {**next(r for r in done if r["number"] == winner), "picked_by": "recheck"}
        return done[0]
    record = next((r for r in records if r["number"] == number), None)
    if record is None:
        raise StudyError(f"study '{study}' has no trial {number}; its trials are 0-{len(records) - 1} "
                         f"(see `tunectl show {study}`)" if records else f"study '{study}' has no trials yet")
    if complete and record["state"] != "COMPLETE":
        best = f"e.g. the best: --trial {done[0]['number']}" if done else "none has completed yet"
        raise StudyError(f"trial {number} of '{study}' is {record['state'].lower()} ({record['reason']}); "
                         f"choose a complete trial, {best}")
    return record


def dashboard_args(name: str, storage: str | None = None, root: str | Path = studies.ROOT,
                   artifacts: str | Path | None = None) -> dict[str, Any]:
    """What `tunectl dashboard` hands optuna-dashboard's run_server: the study's storage and its
    artifact store (--artifacts, else the folder the study recorded, else <study folder>/artifacts),
    so that a trial's checkpoint downloads. Reading only: no folder is made."""
    from optuna.artifacts import FileSystemArtifactStore

    study = open_study(name, storage, root)  # a missing study is one clear line, not an empty dashboard
    folder = Path(artifacts) if artifacts else Path((study.user_attrs.get(ATTR) or {}).get("artifacts")
                                                    or studies.study_dir(name, Path(root)) / "artifacts")
    if folder.exists() and not folder.is_dir():
        raise StudyError(f"--artifacts {folder}: is a file; give the folder that holds the study's checkpoints")
    return {"storage": storage_of(study), "artifact_store": FileSystemArtifactStore(folder), "artifacts": folder}


def checkpoint_path(study_folder: str | Path, record: dict[str, Any]) -> Path | None:
    """The model.pt of a trial record (trial_record), or None when it kept none (not among the best).

    record["checkpoint"] is relative to the study folder (the default store, artifacts/<id>),
    or absolute (--artifacts DIR); either way `study_folder / checkpoint` is the file.
    """
    ref = record.get("checkpoint")
    if not ref:
        return None
    path = Path(study_folder) / ref
    return path if path.is_file() else None


def summarize(study: optuna.Study, storage_url: str | None = None, top: int = 10,
              folder: str | Path | None = None) -> dict[str, Any]:
    """Everything `show`, `tune --json` and the report print: one source of truth."""
    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
    records = trial_records(study, folder)
    complete = sorted((r for r in records if r["state"] == "COMPLETE"), key=lambda r: (r["value"], r["number"]))
    mark_noise(complete)
    meta = study.user_attrs.get(ATTR, {})
    max_epochs = meta.get("space", {}).get("epochs", 0)
    used = sum(r["epochs"] or 0 for r in records)
    saved = sum(max(0, max_epochs - (r["epochs"] or 0)) for r in records if r["state"] == "PRUNED")
    best = None
    if complete:
        b = pick_trial(complete, study.study_name)  # the rechecked winner, when a recheck named one
        best = {k: b[k] for k in ("number", "value", "params", "train_error", "dev_error", "dev_error_se",
                               "train_error_se", "best_epoch", "epochs", "batch_size_used", "config")}
        best["picked_by"] = b.get("picked_by", "dev error")
        best["rechecked"] = {k: v for k, v in b["recheck"].items() if k != "seeds"} if b.get("recheck") else None
    return {
        "study": study.study_name,
        "storage": store.mask_url(storage_url) if storage_url else None,
        "dataset": meta.get("data", {}).get("dataset"),
        "n_trials": len(trials),
        "states": states,
        "best": best,
        "epochs_used": used,
        "epochs_saved": saved,
        "max_epochs": max_epochs,
        "leaderboard": complete[:top],
        "sampler": meta.get("sampler"),
        "pruner": meta.get("pruner"),
        "split": meta.get("manifest", {}).get("sizes"),
        "space": meta.get("space"),
        "last_activity": max((str(t.datetime_complete or t.datetime_start) for t in trials if t.datetime_start), default=None),
        "task": meta.get("manifest", {}).get("task"),
        "wall_seconds": _wall_seconds(trials),
    }


def summary_json(summary: dict[str, Any]) -> dict[str, Any]:
    """What `tune --json` and `show --json` print of a summary: no per-epoch curves, no configs."""
    keys = ("study", "storage", "dataset", "n_trials", "states", "best", "epochs_used", "epochs_saved", "interrupted",
            "seconds", "importances", "importance_method")
    out = {k: summary[k] for k in keys if k in summary}
    out["leaderboard"] = [{k: v for k, v in r.items() if k not in ("curve", "config", "start", "end")} for r in summary["leaderboard"]]
    for r in out["leaderboard"]:  # the seeds' summary, not their every field
        if r.get("recheck"):
            r["recheck"] = {**{k: v for k, v in r["recheck"].items() if k != "seeds"},
                            "dev_errors": [s.get("dev_error") for s in r["recheck"]["seeds"]],
                            "seeds": [s.get("seed") for s in r["recheck"]["seeds"]]}
    return out


def _wall_seconds(trials: list[FrozenTrial]) -> float | None:
    """First trial's start to the last trial's end (a resumed study's pause included)."""
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete or t.datetime_start for t in trials if t.datetime_start]
    return (max(ends) - min(starts)).total_seconds() if starts else None


IMPORTANCE_METHOD = "PED-ANOVA"  # what `importances` computes; tables and the report say so
IMPORTANCE_WHY = ("Optuna's PED-ANOVA: how differently each parameter is spread in the best 10% of complete "
                  "trials than in all of them (it copes with parameters that only some trials have)")


def importance_method() -> dict[str, str]:
    """The evaluator `importances` uses, and what its numbers mean: the label of every importance table."""
    return {"method": IMPORTANCE_METHOD, "why": IMPORTANCE_WHY}


def importances(study: optuna.Study, min_complete: int = 5) -> dict[str, float] | None:
    """Optuna's parameter importances (PED-ANOVA, `importance_method()`) once enough trials are complete.

    The evaluator is named rather than left to Optuna's default (fANOVA before Optuna 5), so the label
    stays true. Its warnings (a parameter's regimes with fewer than 2 trials, experimental features)
    are silenced: nothing a user could act on, printed on every `tune` and `show`."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < min_complete:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (ValueError, RuntimeError):
        return None


def progress_of(study: optuna.Study, start: float, timeout: float | None, target: int | None) -> dict[str, Any]:
    """What the live display shows: trials by state, the best value, time elapsed and left."""
    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    elapsed = time.time() - start
    remaining = None
    if timeout:
        remaining = max(0.0, timeout - elapsed)
    done = states["COMPLETE"] + states["PRUNED"]
    return {"states": states, "best": min(values) if values else None, "elapsed": elapsed,
            "remaining": remaining, "done": done, "target": target}


def list_studies(storage: str | None = None, root: str | Path = studies.ROOT) -> list[dict[str, Any]]:
    """Every study in `storage`, or in each studies/<name>/study.db under root.

    Under root, a study file that cannot be read is listed as unreadable (with the reason)
    and the others are still listed: one damaged folder must not hide the rest.
    """
    quiet_optuna()
    studies.check_root(root)
    urls = [storage] if storage else [f"sqlite:///{p.resolve()}" for p in sorted(Path(root).glob("*/study.db"))]
    out = []
    for url in urls:
        try:
            st = store.open_storage(url, None, create=False)
            found = optuna.get_all_study_summaries(st, include_best_trial=False)
        except StudyError as e:
            if storage:
                raise
            out.append({"study": Path(url).parent.name, "dataset": None, "n_trials": None, "states": None,
                        "last_activity": None, "best_dev_error": None, "storage": url, "unreadable": str(e)})
            continue
        for s in found:
            study = optuna.load_study(study_name=s.study_name, storage=st)
            summary = summarize(study, url, top=0)
            out.append({k: summary[k] for k in ("study", "dataset", "n_trials", "states", "last_activity")}
                       | {"best_dev_error": summary["best"]["value"] if summary["best"] else None,
                          "storage": store.mask_url(url)})
    return out
