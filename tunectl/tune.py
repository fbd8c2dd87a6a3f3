"""Running a study: its settings, sampler and pruner, its creation or resumption, and its run to the end.

What one trial does is `objective.py`; how trials are run by processes and stopped by
signals is `workers.py`; reading a study back is `results.py`. The test split is never
loaded here.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from tunectl import objective, results, studies, workers
from tunectl.config import TrainConfig, from_dict
from tunectl.errors import RunError, StudyError, TunectlError
from tunectl import builders
from tunectl.builders import is_reference, resolve
from tunectl.results import ATTR, RUN_PREFIX, quiet_optuna
from tunectl.space import Space, parse_space, trial_config
from tunectl import storage as store

SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc")
PRUNERS = ("hyperband", "halving", "median", "none")
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit
MAX_HEARTBEAT = 3600
KEEP_CHECKPOINTS = 3
WARM_TOP = 3  # --warm-from: the other study's best few trials, not its whole history


@dataclass
class TuneSettings:
    space: Space
    data: dict[str, Any]  # dataset, data_dir, target, task, split, split_seed, image_size
    study: str
    storage: str | None = None  # None: sqlite in studies/<study>/study.db
    root: str = str(studies.ROOT)
    n_trials: int | None = None  # complete + pruned trials the study should reach
    timeout: float | None = None  # seconds for this invocation
    jobs: int = 1
    sampler: str | None = None  # None: the study's own when resuming, else tpe
    pruner: str | None = None  # None: the study's own when resuming, else hyperband
    seed: int = 0
    heartbeat: int = store.DEFAULT_HEARTBEAT
    keep: int = KEEP_CHECKPOINTS
    base: dict[str, Any] = field(default_factory=dict)  # TrainConfig values under the space (model, init_from)
    device: str | None = None
    artifacts: str | None = None  # checkpoints' folder (Optuna artifact store); None: <study folder>/artifacts
    defaults_first: bool = True  # a new study's first trial: the textbook defaults (warmstart.defaults)
    enqueue: list[str] = field(default_factory=list)  # params files tried first (--enqueue FILE, repeatable)
    warm_from: str | None = None  # another study whose best trials are tried first (--warm-from STUDY)
    warm_top: int = WARM_TOP  # how many of them
    stream: bool = False  # image batches read from the mapped bytes (--stream; same results, never stored)

    @property
    def storage_url(self) -> str:
        return self.storage or studies.default_storage_url(self.study, Path(self.root))

    @property
    def folder(self) -> Path:
        return studies.study_dir(self.study, Path(self.root))

    @property
    def artifact_dir(self) -> Path:
        return Path(self.artifacts) if self.artifacts else self.folder / "artifacts"


# ----------------------------------------------------------------------------- samplers and pruners


def make_sampler(name: str, seed: int, space: Space, parallel: bool) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            # multivariate + group model conditional parameters (beta only under momentum) jointly;
            # constant_liar keeps parallel workers from sampling the same point. n_startup_trials stays
            # Optuna's 10 (the textbook defaults, enqueued first, are one of them): 5 was no better in
            # bench/search_efficiency.py (epochs to match random@400, median of 3 seeds: digits 217 against
            # the default's 162; MNIST in the README's Benchmarks), so nothing here is changed without evidence
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=parallel)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if name == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        if name == "grid":
            return optuna.samplers.GridSampler(grid(space), seed=seed)
    raise TunectlError(f"--sampler {name!r}: use one of {', '.join(SAMPLERS)}")


def grid(space: Space) -> dict[str, list[Any]]:
    from tunectl.errors import SpaceError

    grid: dict[str, list[Any]] = {}
    for name, s in space.params.items():
        key = space.optuna_name(name)
        if s["type"] == "categorical":
            grid[key] = list(s["choices"])
        elif "step" in s:
            # the last step inside [low, high], as Optuna's own distribution ends (rounding 3.5 steps up
            # would add a value above high); 1e-9 absorbs float error (0.3 / 0.1 = 2.9999999999999996)
            n = int((s["high"] - s["low"]) / s["step"] + 1e-9) + 1
            grid[key] = [s["low"] + i * s["step"] for i in range(n)]
        elif s["type"] == "int" and s["high"] - s["low"] <= 16:
            grid[key] = list(range(s["low"], s["high"] + 1))
        else:
            raise SpaceError(f"{space.origin}: params.{name}: --sampler grid needs choices or a step for each parameter")
    return grid


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        # from 3 epochs (a hopeless trial costs three) to the space's epochs, reduction factor 3 (Optuna's
        # default; rungs at 3, 9, 27 epochs). Why 3 and not 1: one epoch is too little to tell a slow
        # starter (a low lr, much dropout) from a hopeless trial. In
        # bench/search_efficiency.py on MNIST (5 seeds) the default matched random search's best at 400
        # epochs in a median of 102 epochs with 3 against 162 with 1 (faster in both seeds where they
        # differed, never slower), and `make tune`'s 30 trials finished 15 whole trials against 11 (more
        # for the importances and the diagnosis), with the same best trial. Within noise the two tie.
        # Successive halving (one bracket, below) lets the defaults' trial prune every later one: faster to
        # match still (median 90), but `make tune` then finishes 3 trials of 30, too few for importances.
        # Fewer than 9 epochs: from a third of them (at least 1), so that one halving still fits before the end.
        return optuna.pruners.HyperbandPruner(min_resource=max(1, min(3, max_epochs // 3)), max_resource=max_epochs,
                                              reduction_factor=3)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TunectlError(f"--pruner {name!r}: use one of {', '.join(PRUNERS)}")


# ----------------------------------------------------------------------------- study set-up


def study_data(settings: TuneSettings, stored: dict[str, Any] | None = None):
    """The study's training and dev splits (never its test split: tuning cannot touch it); `stored`:
    the study's manifest, whose preprocessing and scaling a joining worker applies as recorded."""
    from tunectl.data import DataSettings, load_splits  # torch: only where data are loaded

    # images as bytes (raw): every worker maps the same decode cache rather than holding its own floats;
    # a table's preprocessing and the scaling as the study stored them
    return load_splits(DataSettings.from_dict(settings.data, stream=settings.stream), include_test=False, raw=True,
                       stored=stored)


def base_config(settings: TuneSettings) -> TrainConfig:
    """The TrainConfig under the space: the defaults, the study seed, and --model / --init-from."""
    values = {"model": settings.space.model or "mlp", "seed": settings.seed, **settings.base}
    if settings.space.model_sha256:
        values["model_sha256"] = settings.space.model_sha256
    return from_dict(values)


def check_settings(settings: TuneSettings) -> None:
    """Refuse bad options before anything is loaded or written."""
    studies.check_name(settings.study)
    studies.check_root(settings.root)
    if not 0 <= settings.seed <= MAX_SEED:
        raise TunectlError(f"--seed {settings.seed}: must be between 0 and {MAX_SEED}")
    make_pruner(settings.pruner or "hyperband", settings.space.epochs)
    make_sampler(settings.sampler or "tpe", settings.seed, settings.space, False)
    if settings.jobs < 1:
        raise TunectlError(f"--jobs {settings.jobs}: must be at least 1")
    if settings.n_trials is not None and settings.n_trials < 1:
        raise TunectlError(f"--trials {settings.n_trials}: must be at least 1")
    if not 0 <= settings.heartbeat <= MAX_HEARTBEAT:
        raise TunectlError(f"--heartbeat {settings.heartbeat}: give seconds between 1 and {MAX_HEARTBEAT} "
                           f"(0 turns heartbeats off)")
    if not 1 <= settings.warm_top <= 1000:
        raise TunectlError(f"--warm-top {settings.warm_top}: give between 1 and 1000 trials")
    if (settings.enqueue or settings.warm_from) and settings.sampler == "grid":
        raise TunectlError("--enqueue/--warm-from with --sampler grid: the grid visits every point anyway; "
                           "drop them or use another sampler")
    if settings.warm_from is not None and settings.warm_from == settings.study:
        raise TunectlError(f"--warm-from {settings.warm_from}: is this study itself; name another study")
    if settings.keep < 0:
        raise TunectlError(f"keep {settings.keep}: must be 0 or more")
    if settings.artifacts and Path(settings.artifacts).exists() and not Path(settings.artifacts).is_dir():
        raise TunectlError(f"--artifacts {settings.artifacts}: is a file; give a folder (it is made if missing)")
    store.check_url(settings.storage_url)
    if settings.storage_url.startswith("sqlite:///"):
        path = store.sqlite_path(settings.storage_url)
        if path.exists():  # an empty or damaged study file is refused before anything is written
            store.check_sqlite(path)
    studies.check_owner(settings.folder, settings.study)
    if settings.jobs > 1 and (os.cpu_count() or 1) > 1:  # the options are sound: the fork server imports the
        workers.prestart(PRELOAD)  # workers' modules while this process imports torch and loads the data
    from tunectl.train import check_device

    check_device(settings.device)  # `--device banana` is refused now, not by 10 failed trials


def prepare(settings: TuneSettings, note: Callable[[str], None] = lambda text: None) -> tuple[optuna.Study, Any]:
    """Validate everything, then create or resume the study. Nothing is written before validation passes."""
    quiet_optuna()
    check_settings(settings)
    base = base_config(settings)
    splits = study_data(settings)  # data errors surface before any file is made
    fixed = trial_config(settings.space, {}, base)  # the fixed values must make a valid config
    from tunectl.train import check

    # a model that cannot be built (cnn on tabular data, transfer without --init-from) would fail
    # every trial: refuse it now, not after ten failed trials. A batch larger than the training
    # split is the full batch (batch gradient descent), not an error.
    try:
        check(fixed, splits)
    except TunectlError as e:
        raise type(e)(f"{settings.space.origin}: {e}") from None
    record = {
        "space": settings.space.to_dict(),
        "space_fingerprint": settings.space.fingerprint(),
        "data": settings.data,
        "manifest": splits.manifest,
        "base": base.to_dict(),
        "sampler": settings.sampler,
        "pruner": settings.pruner,
        "seed": settings.seed,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if settings.space.builder_params:  # your builder's names: how a trial's config is rebuilt from its params
        record["builder_params"] = list(settings.space.builder_params)
    if settings.artifacts:  # workers that join without --artifacts use the study's shared folder
        record["artifacts"] = str(Path(settings.artifacts).resolve())
    starts = planned_starts(settings)  # files read, the other study opened: refused before anything is written
    # everything is valid: from here on files are written. A refusal from here on (another
    # study owns the folder, the study exists with other settings) removes nothing, because
    # what is there may belong to another process; only what this process made is undone.
    folder = settings.folder
    made_folder = not folder.exists()
    study, storage, created = None, None, False
    try:
        studies.claim_folder(folder, settings.study)
        storage = store.open_storage(settings.storage_url, settings.heartbeat)
        study, created = _create_or_join(settings, storage, record, note)
        enqueue_starts(study, settings, starts, created, note)
        env = environment(settings)  # every tune that runs the study says so: creator, resumes, joiners
        study.set_user_attr(f"{RUN_PREFIX}{env['time']} {env['host']}:{env['pid']}", env)
        if created:
            from tunectl.space import dump_space

            studies.write_study_files(folder, dump_space(settings.space, [f"search space of study {settings.study}"]),
                                      splits.manifest)
    except OSError:  # a full or read-only disk while making a new study: leave no half-made one behind
        if created:
            optuna.delete_study(study_name=settings.study, storage=storage)
        # the folder goes only if this process made it and no study is in it (another process may own one)
        if made_folder and (created or storage is None or not optuna.get_all_study_names(storage)):
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        raise
    return study, splits


def planned_starts(settings: TuneSettings) -> list[Any]:
    """The trials to try first, checked: --enqueue files, then --warm-from's best trials (the textbook
    defaults are added by enqueue_starts, on a new study only)."""
    from tunectl import warmstart

    starts = [warmstart.from_file(settings.space, path) for path in settings.enqueue]
    if settings.warm_from is not None:
        studies.check_name(settings.warm_from)
        try:
            other = results.open_study(settings.warm_from, settings.storage, settings.root)
        except StudyError as e:
            raise StudyError(f"--warm-from {settings.warm_from}: {e}") from None
        records = results.trial_records(other)
        starts += warmstart.from_study(settings.space, settings.warm_from, records, settings.warm_top)
    return starts


def enqueue_starts(study: optuna.Study, settings: TuneSettings, starts: list[Any], created: bool,
                   note: Callable[[str], None]) -> None:
    """Optuna's enqueue_trial, in order: the defaults (a new study, not with --no-defaults-first or a
    grid), then the files and the other study's trials; each records where it came from and why."""
    from tunectl import warmstart

    first = warmstart.defaults(settings.space) if created and settings.defaults_first and settings.sampler != "grid" \
        else None
    for start in [s for s in (first, *starts) if s is not None]:
        study.enqueue_trial(start.params, user_attrs=start.user_attrs, skip_if_exists=True)
    if starts and not created:
        note(f"study '{settings.study}': {len(starts)} enqueued trial{'s' * (len(starts) > 1)} run next")


def _create_or_join(settings: TuneSettings, storage, record: dict[str, Any],
                    note: Callable[[str], None]) -> tuple[optuna.Study, bool]:
    """Create the study, or join it when it exists (workers started together race to create it).

    Optuna's create_study is atomic in the storage (the name is unique), so exactly one
    process creates; every other one joins, and is checked against what the creator recorded.
    """
    try:
        study = optuna.create_study(study_name=settings.study, storage=storage, direction="minimize")
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=settings.study, storage=storage)
        old = study.user_attrs.get(ATTR)
        for _ in range(40):  # created a moment ago by another process, which writes the record next
            if old is not None:
                break
            time.sleep(0.25)
            old = study.user_attrs.get(ATTR)
        _check_resume(settings, old, record)
        _record_changes(settings, study, old, note)
        if study.metric_names is None:  # a study made before tunectl named its objective
            study.set_metric_names([METRIC])
        return study, False
    study.set_metric_names([METRIC])  # optuna-dashboard and `optuna` name the objective
    if settings.sampler is None:
        settings.sampler = record["sampler"] = "tpe"
    if settings.pruner is None:
        settings.pruner = record["pruner"] = "hyperband"
    study.set_user_attr(ATTR, record)
    study.set_user_attr("dataset", settings.data["dataset"])  # readable in optuna-dashboard
    return study, True


def _record_changes(settings: TuneSettings, study: optuna.Study, old: dict[str, Any],
                    note: Callable[[str], None]) -> None:
    """A resumed study keeps its sampler and pruner unless asked otherwise; a change is recorded."""
    changes = {}
    for key in ("sampler", "pruner"):
        asked = getattr(settings, key)
        if asked is None:
            setattr(settings, key, old[key])
        elif asked != old[key]:
            changes[key] = [old[key], asked]
    if changes:
        old = {**old, **{k: v[1] for k, v in changes.items()},
               "changes": [*old.get("changes", []), {"at": time.strftime("%Y-%m-%d %H:%M:%S"), **changes}]}
        study.set_user_attr(ATTR, old)
        for key, (was, now) in changes.items():
            note(f"study '{settings.study}': --{key} {now} from now on (it was {was}); recorded in the study")


METRIC = "dev error"  # the objective's name, shown by optuna-dashboard and the `optuna` CLI


def environment(settings: TuneSettings) -> dict[str, Any]:
    """What ran the study, for the report's environment section: the command line, the versions,
    the device, this machine, and the git commit of the working folder when it is a repository."""
    import platform
    import shlex
    import socket
    import subprocess
    import sys

    import torch

    import tunectl
    from tunectl.train import pick_device

    commit = None
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        commit = done.stdout.strip() or None if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"command": shlex.join(["tunectl", *sys.argv[1:]]), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host": socket.gethostname(), "pid": os.getpid(), "cwd": os.getcwd(), "git": commit,
            "tunectl": tunectl.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "optuna": optuna.__version__, "device": str(pick_device(settings.device)), "jobs": settings.jobs}


DEFAULT_SPACE = "quick"  # a shipped space (searchspaces/quick.yaml): found from any folder


def settings_for(space: Path | str | None, data: dict[str, Any], study: str | None = None, storage: str | None = None,
                 model: str | None = None, init_from: str | None = None, epochs: int | None = None,
                 fast_curves: bool = False, **options: Any) -> TuneSettings:
    """`tunectl tune`'s options -> TuneSettings. With --storage and --study but no --space, a worker
    joins the study that exists there and takes its settings from it; otherwise the space (a file's
    path, or a shipped space's name; default quick) and `data` (command-line flags, None: unset)
    make a new or resumed study. `fast_curves` (--fast-curves) goes into the base config, where the
    study records how its train curves are measured (a resume or a joiner must measure them alike).
    `options` are the rest of TuneSettings (n_trials, timeout, jobs, sampler, pruner, seed, ...)."""
    if options.get("jobs", 1) > 1 and (os.cpu_count() or 1) > 1:  # before this process imports torch (data,
        workers.prestart(PRELOAD)  # space): the fork server's imports then overlap all of this command's start
    from tunectl.data import DataSettings
    from tunectl.space import find_space, load_space

    if epochs is not None and epochs < 1:
        raise TunectlError(f"--epochs {epochs}: must be at least 1")
    if space is None and storage and study:
        own = {k: options.pop(k) for k in ("sampler", "pruner", "seed") if k in options}
        joined = settings_from_study(study, storage, {k: v for k, v in data.items() if v is not None}, epochs, model,
                                     **options)
        if joined is not None:
            if fast_curves:  # checked against the study's record by prepare() (_check_resume)
                joined.base = {**joined.base, "fast_curves": True}
            return joined
        options.update(own)
    space = find_space(space or DEFAULT_SPACE)
    sp = load_space(space)
    if epochs is not None:
        sp = dataclasses.replace(sp, epochs=epochs)
    d = DataSettings.from_dict({}, **{**data, "dataset": data.get("dataset") or sp.dataset})
    if is_reference(model):  # --model FILE.py:FUNCTION over the space's model: the space is read for it
        sp = parse_space({**sp.to_dict(), "model": resolve(model), "model_sha256": None}, sp.origin)
        model = None
    base = {k: v for k, v in (("model", model), ("init_from", init_from), ("fast_curves", fast_curves)) if v}
    chosen = f"-{d.classes}" if d.classes else ""  # a class selection is another data set: another study
    name = study if study is not None else studies.safe_name(f"{d.dataset}{chosen}-{space.stem}")
    return TuneSettings(sp, d.to_dict(), name, storage, base=base, **options)


def settings_from_study(name: str, storage: str, data: dict[str, Any] | None = None, epochs: int | None = None,
                        model: str | None = None, **options: Any) -> TuneSettings | None:
    """A worker joining an existing study: space, data settings, sampler, pruner and seed come
    from the study itself (remote workers share no folder). None when there is no such study.

    `data` overrides data settings (e.g. where this machine keeps the files); whatever is given,
    prepare() still checks that this worker's data produce the study's split. `options` are this
    invocation's own TuneSettings: n_trials, timeout, jobs, heartbeat, root, artifacts, device.
    """
    quiet_optuna()
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        return None
    if name not in optuna.get_all_study_names(store.open_storage(storage, None)):
        return None
    meta = results.open_study(name, storage).user_attrs.get(ATTR)
    if meta is None:
        raise StudyError(f"study '{name}' exists but was not made by tunectl; name a new one with --study NEW")
    doc = dict(meta["space"])
    if is_reference(doc.get("model")):  # your own builder: this machine's file must be the study's, before it runs
        doc["model"] = builders.worker_copy(name, doc, model)
    elif model is not None and model != meta["base"].get("model"):
        raise StudyError(f"study '{name}' tunes model {meta['base'].get('model')}, not {model}; drop --model to join it")
    space = parse_space(doc, f"study '{name}'")
    if epochs is not None:  # a different budget is a different search: prepare() refuses it by name
        space = dataclasses.replace(space, epochs=epochs)
    if not options.get("artifacts"):
        options["artifacts"] = meta.get("artifacts")
    return TuneSettings(space, {**meta["data"], **(data or {})}, name, storage, sampler=meta["sampler"],
                        pruner=meta["pruner"], seed=meta["seed"], base=dict(meta["base"]), **options)


def _check_resume(settings: TuneSettings, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    if old is None:
        raise StudyError(f"study '{settings.study}' exists but was not made by tunectl; name a new one with --study NEW")
    hint = f"resume it with its original settings, or start a new one with --study {settings.study}-2"
    if old["space_fingerprint"] != new["space_fingerprint"]:
        raise StudyError(f"study '{settings.study}' was started with a different search space; {hint}")
    if old["data"].get("dataset") != new["data"].get("dataset"):
        raise StudyError(
            f"study '{settings.study}' was started on data set '{old['data'].get('dataset')}', not "
            f"'{new['data'].get('dataset')}'; {hint}"
        )
    fast = bool((old.get("base") or {}).get("fast_curves")), bool((new.get("base") or {}).get("fast_curves"))
    if fast[0] != fast[1]:  # one study, one way of measuring its train curves: else its curves do not compare
        how = ("as running averages (--fast-curves)", "in eval mode on a sample of the training split")
        raise StudyError(f"study '{settings.study}' measures its train curves {how[0] if fast[0] else how[1]}; "
                         f"{'add' if fast[0] else 'drop'} --fast-curves to resume it, or start a new one with "
                         f"--study {settings.study}-2")
    from tunectl.data import same_split

    if not same_split(old["manifest"], new["manifest"]):
        def split_of(m: dict[str, Any]) -> str:
            sizes = "/".join(str(v) for v in (m.get("sizes") or {}).values())
            return f"split seed {m.get('seed')}, sizes {sizes}, data hash {str(m.get('data_hash'))[:8]}"

        raise StudyError(
            f"study '{settings.study}': these data do not produce the study's split (study: {split_of(old['manifest'])}; "
            f"here: {split_of(new['manifest'])}); use the study's data, --split and --split-seed, or start a new --study"
        )


# ----------------------------------------------------------------------------- the objective


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def work(settings: TuneSettings, worker: int = 0, on_trial: Callable[[], None] | None = None,
         splits=None, threads: int | None = None) -> None:
    """One worker: run trials until the trial target, the timeout, a stop, or an interrupt."""
    quiet_optuna()
    if threads:
        import torch

        torch.set_num_threads(threads)
    storage = store.open_storage(settings.storage_url, settings.heartbeat)
    shared = store.is_server(settings.storage_url)  # other machines' workers may be on it too
    study = optuna.load_study(study_name=settings.study, storage=storage,
                              pruner=make_pruner(settings.pruner, settings.space.epochs))
    # a seeded sampler restarts its random stream in every process: offset the seed by the trials the
    # study already holds, or a resumed study would replay its first configurations one by one
    seed = workers.sampler_seed(settings.seed, worker, shared) + 1000 * len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(settings.sampler, seed, settings.space, settings.jobs > 1 or shared)
    from tunectl.data import same_split

    stored = study.user_attrs[ATTR]["manifest"]
    if splits is None:  # a worker on its own (not handed its parent's splits) loads them, as stored
        splits = study_data(settings, stored)
    if not same_split(stored, splits.manifest):  # loaded here or handed over: the study's split, or no trial
        raise StudyError(f"study '{settings.study}': this worker's data do not produce the study's split; "
                         f"give it the same data set and --split")
    optuna.storages.fail_stale_trials(study)  # a crashed worker's trial: failed now, retried below
    workers.fail_unstarted(study, storage, 3 * settings.heartbeat if settings.heartbeat else None)
    callbacks = [objective.stop_after_failures, workers.stop_between_trials]
    if on_trial is not None:
        callbacks.append(lambda study, trial: on_trial())
    gate = workers.Gate(settings.folder / ".trials.lock")
    run = objective.Objective(settings, splits, base_config(settings), settings.device, on_start=gate.release,
                              storage=storage)
    workers.run_trials(study, run, gate, settings.n_trials, settings.timeout, callbacks, settings.storage_url)


# what a worker imports, loaded once by the fork server (workers.prestart) instead of by every worker:
# torch, Optuna, the trial's modules, and torch._dynamo, which torch.optim imports when a process makes its
# first optimizer (about 2.5 s of a worker's first trial otherwise)
PRELOAD = ["torch", "torch._dynamo", "optuna", "tunectl.tune", "tunectl.objective", "tunectl.train",
           "tunectl.models", "tunectl.data", "tunectl.pixels", "tunectl.sharing",
           # and what opening the study's storage imports (Optuna loads its SQL layer on first use): 0.8 s a worker
           "sqlalchemy.orm", "sqlalchemy.exc", "sqlalchemy.dialects.sqlite", "alembic.command", "alembic.config",
           "alembic.migration", "alembic.script"]


def worker_main(payload: dict[str, Any], worker: int, threads: int) -> None:
    """A worker process: its settings come as plain data and the parent's splits in shared memory (or as the
    mapped cache file), so it loads no data; exit 130 on a stop, 2 on a refusal."""
    workers.on_signals(workers.request_stop)  # Ctrl-C reaches the whole process group; SIGTERM comes from the parent
    settings = _settings_from(payload["settings"])
    try:
        from tunectl import sharing

        splits = sharing.received(payload["splits"])  # a streamed split gives the file's pages back, as here
        work(settings, worker, splits=splits, threads=threads)
    except KeyboardInterrupt:
        os._exit(130)
    except TunectlError as e:
        import sys

        print(f"error: {e}", file=sys.stderr)
        os._exit(2)


def _shared(splits, on_note: Callable[[str], None]):
    """The splits ready for the workers (sharing.share), or None, said in a note, where shared memory cannot
    hold them (a container's small /dev/shm): then each worker loads and splits the data itself, as before."""
    from tunectl import sharing

    try:
        return sharing.share(splits)
    except (RuntimeError, OSError) as e:
        on_note(f"cannot hand the data to the workers in shared memory ({str(e).splitlines()[0][:120]}); "
                f"each worker loads its own copy (a larger /dev/shm avoids that)")
        return None


def _settings_from(d: dict[str, Any]) -> TuneSettings:
    d = dict(d)
    d["space"] = parse_space(d["space"], d.pop("space_origin"))
    return TuneSettings(**d)


# ----------------------------------------------------------------------------- running a study


def run_study(settings: TuneSettings, on_progress: Callable[[dict[str, Any]], None] | None = None,
              on_note: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Create or resume the study, run the workers, return the summary (interrupted or not).

    `on_note` receives one-line notes for the user (a capped --jobs, a changed sampler). The
    summary carries the parameter importances too, so a caller need not open the study again.
    """
    study, splits = prepare(settings, on_note)
    from tunectl import sharing

    jobs, why = workers.plan_jobs(settings.jobs, settings.n_trials, _finished(study), sharing.nbytes(splits))
    if jobs != settings.jobs and why:
        on_note(f"--jobs {settings.jobs}: running {jobs} worker{'s' * (jobs > 1)} ({why})")
    settings.jobs = jobs
    start = time.time()

    def progress() -> None:
        if on_progress:
            on_progress(results.progress_of(study, start, settings.timeout, settings.n_trials))

    progress()  # the study is ready: the display may start
    workers.Stop.requested = False
    previous = workers.on_signals(workers.request_stop)
    try:
        if settings.jobs == 1:
            work(settings, 0, on_trial=progress, splits=splits)
        else:
            plain = {**asdict(settings), "space": settings.space.to_dict(), "space_origin": settings.space.origin}
            # loaded and split once, here: the workers get these very pages (sharing.py), not a copy or a reload
            payload = {"settings": plain, "splits": _shared(splits, on_note)}
            workers.run_processes(worker_main, payload, settings.jobs, progress, settings.study, settings.storage_url)
    except KeyboardInterrupt:  # raised by check_stop, after the trial was recorded
        workers.Stop.requested = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    optuna.storages.fail_stale_trials(study)
    out = results.summarize(study, settings.storage_url, folder=settings.folder)
    out["interrupted"] = workers.Stop.requested
    out["seconds"] = time.time() - start
    out["importances"] = results.importances(study)
    out["importance_method"] = results.importance_method()
    aborted = study.user_attrs.get("aborted")
    if aborted:
        study.set_user_attr("aborted", None)  # a fixed configuration may resume
        raise RunError(f"study '{settings.study}' stopped: {aborted}; fix the configuration and resume")
    return out
