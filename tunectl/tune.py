"""run_study(): many models side by side, Optuna choosing and pruning; the only Optuna-study code.

One trial = one `train.fit` call. Each epoch's dev error is reported to Optuna, whose
pruner (Hyperband by default) may stop the trial. Workers are processes (`--jobs N`),
each with its share of the CPU threads, all on one storage with heartbeats, so a
killed worker's trial is failed and retried once. The test split is never loaded here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import socket
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunectl import studies
from tunectl.config import TrainConfig, from_dict
from tunectl.errors import RunError, StorageError, StudyError, TunectlError
from tunectl.space import Space, parse_space, suggest, trial_config

SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc")
PRUNERS = ("hyperband", "halving", "median", "none")
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit
MAX_HEARTBEAT = 3600
MAX_CONSECUTIVE_FAILURES = 10  # that many failures in a row is a misconfiguration, not bad luck
KEEP_CHECKPOINTS = 3
ATTR = "tunectl"  # the study user attribute holding everything a worker needs


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
    heartbeat: int = studies.DEFAULT_HEARTBEAT
    keep: int = KEEP_CHECKPOINTS
    base: dict[str, Any] = field(default_factory=dict)  # TrainConfig values under the space (model, init_from)
    device: str | None = None
    artifacts: str | None = None  # checkpoints' folder (Optuna artifact store); None: <study folder>/artifacts

    @property
    def storage_url(self) -> str:
        return self.storage or studies.default_storage_url(self.study, Path(self.root))

    @property
    def folder(self) -> Path:
        return studies.study_dir(self.study, Path(self.root))

    @property
    def artifact_dir(self) -> Path:
        return Path(self.artifacts) if self.artifacts else self.folder / "artifacts"


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


# ----------------------------------------------------------------------------- samplers and pruners


def make_sampler(name: str, seed: int, space: Space, parallel: bool) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            # multivariate + group model conditional parameters (beta only under momentum) jointly;
            # constant_liar keeps parallel workers from sampling the same point
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=parallel)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if name == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        if name == "grid":
            return optuna.samplers.GridSampler(_grid(space), seed=seed)
    raise TunectlError(f"--sampler {name!r}: use one of {', '.join(SAMPLERS)}")


def _grid(space: Space) -> dict[str, list[Any]]:
    from tunectl.errors import SpaceError

    grid: dict[str, list[Any]] = {}
    for name, s in space.params.items():
        key = space.optuna_name(name)
        if s["type"] == "categorical":
            grid[key] = list(s["choices"])
        elif "step" in s:
            n = int(round((s["high"] - s["low"]) / s["step"])) + 1
            grid[key] = [s["low"] + i * s["step"] for i in range(n)]
        elif s["type"] == "int" and s["high"] - s["low"] <= 16:
            grid[key] = list(range(s["low"], s["high"] + 1))
        else:
            raise SpaceError(f"{space.origin}: params.{name}: --sampler grid needs choices or a step for each parameter")
    return grid


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TunectlError(f"--pruner {name!r}: use one of {', '.join(PRUNERS)}")


# ----------------------------------------------------------------------------- study set-up


def _quiet_optuna() -> None:
    # Optuna logs each failed trial with its traceback; we record and show the message instead
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _splits(settings: TuneSettings):
    from tunectl.data import DataSpec, load_splits, parse_split  # torch: only where data are loaded

    d = settings.data
    ratios = parse_split(d["split"]) if isinstance(d.get("split"), str) else (tuple(d["split"]) if d.get("split") else None)
    spec = DataSpec(d["dataset"], str(d.get("data_dir", "data")), False, d.get("target"), d.get("task"), d.get("image_size"))
    # include_test=False: tuning never holds the test split, so no code path here can touch it
    return load_splits(spec, ratios, int(d.get("split_seed", 0)), 1.0, include_test=False)


def _base_config(settings: TuneSettings) -> TrainConfig:
    values = {"model": settings.space.model or "mlp", "seed": settings.seed, **settings.base}
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
    if settings.keep < 0:
        raise TunectlError(f"keep {settings.keep}: must be 0 or more")
    if settings.artifacts and Path(settings.artifacts).exists() and not Path(settings.artifacts).is_dir():
        raise TunectlError(f"--artifacts {settings.artifacts}: is a file; give a folder (it is made if missing)")
    studies.check_url(settings.storage_url)
    if settings.storage_url.startswith("sqlite:///"):
        path = studies.sqlite_path(settings.storage_url)
        if path.exists():  # an empty or damaged study file is refused before anything is written
            studies.check_sqlite(path)
    studies.check_owner(settings.folder, settings.study)
    from tunectl.train import check_device

    check_device(settings.device)  # `--device banana` is refused now, not by 10 failed trials


def prepare(settings: TuneSettings, note: Callable[[str], None] = lambda text: None) -> tuple[optuna.Study, Any]:
    """Validate everything, then create or resume the study. Nothing is written before validation passes."""
    _quiet_optuna()
    check_settings(settings)
    base = _base_config(settings)
    splits = _splits(settings)  # data errors surface before any file is made
    fixed = trial_config(settings.space, {}, base)  # the fixed values must make a valid config
    from tunectl.train import batch_size_for

    # a batch larger than the training split would fail every trial: refuse it now
    searched = settings.space.params.get("batch_size")
    sizes = [fixed.batch_size] if not searched else searched.get("choices") or [searched["low"]]
    for bs in sizes:
        try:
            batch_size_for(base.replace(batch_size=bs), len(splits.x_train))
        except TunectlError as e:
            if searched:
                raise TunectlError(f"{settings.space.origin}: params.batch_size: {e}") from None
            raise TunectlError(f"{settings.space.origin}: {e} (the default: set batch_size under fixed:)") from None
    from tunectl.models import build_model

    build_model(fixed, splits.input_shape, splits.out_dim)  # e.g. transfer without --init-from: refuse now, not 10 failed trials later
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
    if settings.artifacts:  # workers that join without --artifacts use the study's shared folder
        record["artifacts"] = str(Path(settings.artifacts).resolve())
    # everything is valid: from here on files are written. A refusal from here on (another
    # study owns the folder, the study exists with other settings) removes nothing, because
    # what is there may belong to another process; only what this process made is undone.
    folder = settings.folder
    made_folder = not folder.exists()
    study, storage, created = None, None, False
    try:
        studies.claim_folder(folder, settings.study)
        storage = studies.open_storage(settings.storage_url, settings.heartbeat)
        study, created = _create_or_join(settings, storage, record, note)
        if created:
            from tunectl.space import dump_space

            studies.write_text(folder / "space.yaml", dump_space(settings.space, [f"search space of study {settings.study}"]))
            studies.write_json(folder / "split.json", splits.manifest)
    except OSError:  # a full or read-only disk while making a new study: leave no half-made one behind
        if created:
            optuna.delete_study(study_name=settings.study, storage=storage)
        # the folder goes only if this process made it and no study is in it (another process may own one)
        if made_folder and (created or storage is None or not optuna.get_all_study_names(storage)):
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        raise
    return study, splits


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
        return study, False
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


def settings_from_study(name: str, storage: str, data: dict[str, Any] | None = None, epochs: int | None = None,
                        model: str | None = None, **options: Any) -> TuneSettings | None:
    """A worker joining an existing study: space, data settings, sampler, pruner and seed come
    from the study itself (remote workers share no folder). None when there is no such study.

    `data` overrides data settings (e.g. where this machine keeps the files); whatever is given,
    prepare() still checks that this worker's data produce the study's split. `options` are this
    invocation's own TuneSettings: n_trials, timeout, jobs, heartbeat, root, artifacts, device.
    """
    _quiet_optuna()
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        return None
    if name not in optuna.get_all_study_names(studies.open_storage(storage, None)):
        return None
    meta = open_study(name, storage).user_attrs.get(ATTR)
    if meta is None:
        raise StudyError(f"study '{name}' exists but was not made by tunectl; name a new one with --study NEW")
    space = parse_space(meta["space"], f"study '{name}'")
    if epochs is not None:  # a different budget is a different search: prepare() refuses it by name
        space = dataclasses.replace(space, epochs=epochs)
    if model is not None and model != meta["base"].get("model"):
        raise StudyError(f"study '{name}' tunes model {meta['base'].get('model')}, not {model}; drop --model to join it")
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


def _finite(v: Any) -> Any:
    """Full precision; NaN and infinity (JSON has neither) become None."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


class Objective:
    def __init__(self, settings: TuneSettings, splits, device=None, on_start: Callable[[], None] = lambda: None):
        self.settings, self.splits, self.device, self.on_start = settings, splits, device, on_start
        self.base = _base_config(settings)

    def __call__(self, trial: optuna.Trial) -> float:
        curve: list[dict[str, float]] = []
        try:
            return self._run(trial, curve)
        except KeyboardInterrupt:
            trial.set_user_attr("reason", "interrupted")
            trial.set_user_attr("curve", curve)
            raise
        except optuna.TrialPruned:
            raise
        except Exception as e:  # noqa: BLE001 - recorded with its message, and the study goes on
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            trial.set_user_attr("reason", f"failed: {type(e).__name__}: {msg}"[:500])
            trial.set_user_attr("curve", curve)
            raise

    def _run(self, trial: optuna.Trial, curve: list[dict[str, float]]) -> float:
        from tunectl.train import fit

        s = self.settings
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        self.on_start()  # the trial is RUNNING and signed: other workers may count it and start theirs
        # a retried trial (its worker died) carries the number of the original in system attrs
        retried = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        if retried is not None:
            trial.set_user_attr("retry_of", retried)
        _check_stop()  # a stop asked while Optuna created this trial: record it as interrupted
        chosen = suggest(trial, s.space)
        cfg = trial_config(s.space, chosen, self.base)
        trial.set_user_attr("params", chosen)
        trial.set_user_attr("config", cfg.to_dict())
        pruned_at: list[int] = []

        def on_epoch(epoch: int, m: dict[str, float]) -> bool:
            curve.append({k: _finite(v) for k, v in m.items()})
            if not math.isfinite(m["dev_error"]):
                return True
            trial.report(m["dev_error"], epoch)
            if trial.should_prune():
                pruned_at.append(epoch)
                return True
            return False

        hist = fit(cfg, self.splits, on_epoch=on_epoch, on_batch=_check_stop, device=self.device)
        trial.set_user_attr("curve", curve)
        trial.set_user_attr("train_error", _finite(hist.train_error))
        trial.set_user_attr("dev_error", _finite(hist.dev_error))
        trial.set_user_attr("best_epoch", hist.best_epoch)
        trial.set_user_attr("epochs_run", hist.epochs_run)
        trial.set_user_attr("seconds", hist.seconds)
        folder = s.folder / "trials" / str(trial.number)
        folder.mkdir(parents=True, exist_ok=True)
        studies.write_json(folder / "curve.json", curve)
        if hist.status == "diverged":
            trial.set_user_attr("reason", "diverged")
            raise optuna.TrialPruned("diverged")
        if pruned_at:
            trial.set_user_attr("reason", f"pruned at epoch {pruned_at[0]}")
            raise optuna.TrialPruned(f"pruned at epoch {pruned_at[0]}")
        trial.set_user_attr("reason", "complete" if hist.status == "complete" else hist.status)
        self._keep_best(trial, hist)
        return hist.dev_error

    def _keep_best(self, trial: optuna.Trial, hist) -> None:
        """Keep the weights of the best few trials only, in Optuna's artifact store.

        The store is a folder: the study's artifacts/, or --artifacts (a path every worker
        mounts). A trial keeps its file while it is among the best `keep` complete trials;
        whichever worker finishes a better one removes the superseded files. Trial user
        attrs: "artifact" (the id) and "checkpoint" (the file, see checkpoint_path).
        """
        import tempfile

        from optuna.artifacts import upload_artifact
        from optuna.artifacts.exceptions import ArtifactNotFound
        from tunectl.models import save_checkpoint

        s = self.settings
        done = [(t.value, t.number, t.user_attrs.get("artifact"))
                for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        ranked = sorted([*((v, n) for v, n, _ in done), (hist.dev_error, trial.number)])[: s.keep]
        keep = {n for _, n in ranked}
        store = studies.artifact_store(s.artifact_dir)
        if trial.number in keep and hist.model is not None:
            with tempfile.TemporaryDirectory(prefix="tunectl-") as tmp:
                path = Path(tmp) / "model.pt"  # the name Optuna records (and the dashboard offers)
                save_checkpoint(path, hist.checkpoint({"data": s.data, "trial": trial.number,
                                                       "manifest": self.splits.manifest}))
                artifact = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
            trial.set_user_attr("artifact", artifact)
            trial.set_user_attr("checkpoint", _checkpoint_ref(s, artifact))
        for _, number, artifact in done:
            if artifact and number not in keep:
                try:
                    store.remove(artifact)
                except ArtifactNotFound:  # removed before, by this or another worker
                    pass


def _checkpoint_ref(settings: TuneSettings, artifact: str) -> str:
    """The stored file, relative to the study folder when inside it, else absolute (a shared --artifacts)."""
    path = (settings.artifact_dir / artifact).resolve()
    try:
        return str(path.relative_to(settings.folder.resolve()))
    except ValueError:
        return str(path)


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


def _stop_after_failures(study: optuna.Study, trial: FrozenTrial) -> None:
    """Ten failures in a row (by error, not by a killed worker) stop the study."""
    if trial.state != TrialState.FAIL:
        return
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    last = finished[-MAX_CONSECUTIVE_FAILURES:]
    # a worker that died leaves no reason (it is retried); an interrupted one says so
    if len(last) == MAX_CONSECUTIVE_FAILURES and all(
        t.state == TrialState.FAIL and str(t.user_attrs.get("reason", "")).startswith("failed") for t in last
    ):
        study.set_user_attr("aborted", f"{MAX_CONSECUTIVE_FAILURES} trials failed in a row; the last: "
                                       f"{trial.user_attrs.get('reason', 'failed')}")
        study.stop()


class _Stop:
    """Ctrl-C and SIGTERM only raise this flag; the running trial stops at its next mini-batch.

    Python's default raises KeyboardInterrupt wherever the signal lands: inside Optuna's own
    bookkeeping (a trial just created, a SQLite transaction, the heartbeat thread starting) that
    leaves a trial RUNNING or a lock held and the process hung. Between two batches nothing is
    half done, so the trial is recorded as interrupted and the summary printed.
    """

    requested = False


def _request_stop(signum, frame) -> None:
    _Stop.requested = True


def _check_stop(*_: Any) -> None:
    if _Stop.requested:
        raise KeyboardInterrupt


def _stop_between_trials(study: optuna.Study, trial: FrozenTrial) -> None:
    if _Stop.requested:  # the signal came while Optuna recorded a trial: start no other
        study.stop()


def _on_signals(handler) -> dict[int, Any]:
    """Install `handler` for SIGINT and SIGTERM; return the previous ones (none off the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def work(settings: TuneSettings, worker: int = 0, on_trial: Callable[[], None] | None = None,
         splits=None, threads: int | None = None) -> None:
    """One worker: optimize until the trial target, the timeout, a stop, or an interrupt."""
    _quiet_optuna()
    if threads:
        import torch

        torch.set_num_threads(threads)
    storage = studies.open_storage(settings.storage_url, settings.heartbeat)
    shared = studies.is_server(settings.storage_url)  # other machines' workers may be on it too
    study = optuna.load_study(study_name=settings.study, storage=storage,
                              pruner=make_pruner(settings.pruner, settings.space.epochs))
    # a seeded sampler restarts its random stream in every process: offset the seed by the trials the
    # study already holds, or a resumed study would replay its first configurations one by one
    seed = _sampler_seed(settings.seed, worker, shared) + 1000 * len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(settings.sampler, seed, settings.space, settings.jobs > 1 or shared)
    if splits is None:
        from tunectl.data import same_split

        splits = _splits(settings)
        if not same_split(study.user_attrs[ATTR]["manifest"], splits.manifest):
            raise StudyError(f"study '{settings.study}': this worker's data do not produce the study's split; "
                             f"give it the same data set and --split")
    optuna.storages.fail_stale_trials(study)  # a crashed worker's trial: failed now, retried below
    _fail_unstarted(study, 3 * settings.heartbeat if settings.heartbeat else None)
    callbacks = [_stop_after_failures, _stop_between_trials]
    if on_trial is not None:
        callbacks.append(lambda study, trial: on_trial())
    gate = _Gate(settings.folder / ".trials.lock")
    objective = Objective(settings, splits, settings.device, on_start=gate.release)
    deadline = time.time() + settings.timeout if settings.timeout else None
    # one trial per optimize() call, each started under the gate: the count of trials started
    # (running or finished) and the start of the next are one step, so the workers of this machine
    # together never run more trials than --trials asks
    while not _Stop.requested and not (deadline and time.time() >= deadline):
        with gate:
            if study.user_attrs.get("aborted"):
                break
            if isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
                break  # every point of the grid was tried: the search is done
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial is not counted as running
            if settings.n_trials is not None and _started(study) >= settings.n_trials:
                break
            try:
                study.optimize(objective, n_trials=1, callbacks=callbacks, catch=(Exception,), gc_after_trial=False)
            except Exception as e:  # noqa: BLE001 - Optuna could not record a trial: say why the storage failed
                cause = studies.storage_cause(e)
                if cause is None:
                    raise
                raise StorageError(f"the study storage failed: {studies.mask_text(studies.storage_error(cause), settings.storage_url)}"
                                   f"; free disk space or check the database server, then resume") from None


class _Gate:
    """An exclusive lock (flock on a file in the study folder) between this machine's workers.

    Held from the count of started trials until the new trial has started (the objective's
    first act releases it), so that two workers cannot both start the last trial asked for.
    """

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def __enter__(self) -> "_Gate":
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


def _fail_unstarted(study: optuna.Study, grace: float | None) -> None:
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
            try:
                study._storage.set_trial_user_attr(t._trial_id, "reason", "worker died before the trial started")
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
                pass


def _sampler_seed(seed: int, worker: int, shared: bool) -> int:
    """seed + worker; on a server, also who this process is: every machine's first worker is worker 0,
    and equal seeds would propose the same first trials. (Which worker runs which trial depends on
    timing there anyway, so a study on a server is not reproducible trial for trial.)"""
    if not shared:
        return seed + worker
    import zlib

    return zlib.crc32(f"{seed}:{worker}:{socket.gethostname()}:{os.getpid()}".encode()) % 2**31


def _worker_main(settings_dict: dict[str, Any], worker: int, threads: int) -> None:
    _on_signals(_request_stop)  # Ctrl-C reaches the whole process group; SIGTERM comes from _stop_workers
    settings = _settings_from(settings_dict)
    try:
        work(settings, worker, threads=threads)
    except KeyboardInterrupt:
        os._exit(130)
    except TunectlError as e:
        import sys

        print(f"error: {e}", file=sys.stderr)
        os._exit(2)


def _settings_from(d: dict[str, Any]) -> TuneSettings:
    d = dict(d)
    d["space"] = parse_space(d["space"], d.pop("space_origin"))
    return TuneSettings(**d)


# ----------------------------------------------------------------------------- running a study


def run_study(settings: TuneSettings, on_progress: Callable[[dict[str, Any]], None] | None = None,
              on_note: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Create or resume the study, run the workers, return the summary (interrupted or not).

    `on_note` receives one-line notes for the user (a capped --jobs, a changed sampler).
    """
    study, splits = prepare(settings, on_note)
    jobs, why = plan_jobs(settings.jobs, settings.n_trials, _finished(study))
    if jobs != settings.jobs:
        on_note(f"--jobs {settings.jobs}: running {jobs} worker{'s' * (jobs > 1)} ({why})")
        settings.jobs = jobs
    start = time.time()
    progress = lambda: on_progress and on_progress(progress_of(study, settings, start))  # noqa: E731
    progress()  # the study is ready: the display may start
    _Stop.requested = False
    previous = _on_signals(_request_stop)
    try:
        if settings.jobs == 1:
            work(settings, 0, on_trial=progress, splits=splits)
        else:
            _run_workers(settings, progress)
    except KeyboardInterrupt:  # raised by _check_stop, after the trial was recorded
        _Stop.requested = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    optuna.storages.fail_stale_trials(study)
    out = summarize(study, settings.storage_url)
    out["interrupted"] = _Stop.requested
    out["seconds"] = time.time() - start
    aborted = study.user_attrs.get("aborted")
    if aborted:
        study.set_user_attr("aborted", None)  # a fixed configuration may resume
        raise RunError(f"study '{settings.study}' stopped: {aborted}; fix the configuration and resume")
    return out


def plan_jobs(asked: int, n_trials: int | None, finished: int) -> tuple[int, str]:
    """Workers this machine can hold: no more than its cores, than its free memory holds at this
    process's size (a worker loads the same data and torch), or than the trials still to run."""
    jobs, why = asked, []
    cores = os.cpu_count() or 1
    if jobs > cores:
        jobs, why = cores, [f"{cores} CPU cores"]
    per_worker, free = _memory()
    if per_worker and free and jobs > 1:
        fit = max(1, int(0.8 * free // per_worker))
        if fit < jobs:
            jobs, why = fit, [f"{free / 2**30:.1f} GiB free at {per_worker / 2**30:.1f} GiB a worker"]
    if n_trials is not None and jobs > max(1, n_trials - finished):
        jobs, why = max(1, n_trials - finished), [f"{max(0, n_trials - finished)} trials left to run"]
    return jobs, "; ".join(why)


def _memory() -> tuple[int | None, int | None]:
    """(this process's resident bytes, the machine's available bytes), or None where unknown (not Linux)."""
    try:
        resident = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return resident, int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None, None


def _run_workers(settings: TuneSettings, progress: Callable[[], Any]) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    threads = max(1, (os.cpu_count() or 1) // settings.jobs)
    payload = {**asdict(settings), "space": settings.space.to_dict(), "space_origin": settings.space.origin}
    procs = [ctx.Process(target=_worker_main, args=(payload, i, threads), daemon=False) for i in range(settings.jobs)]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        if _Stop.requested:
            _stop_workers(procs, settings)
            raise KeyboardInterrupt
        progress()
        for p in procs:
            p.join(timeout=1.0 / len(procs))
    progress()
    codes = [p.exitcode for p in procs]
    if all(c == 2 for c in codes):
        raise RunError(f"study '{settings.study}': every worker refused to start (see the messages above)")


def _stop_workers(procs, settings: TuneSettings) -> None:
    """Ctrl-C reached the workers too (same process group); SIGTERM may not have: pass it on."""
    for p in procs:
        if p.is_alive():
            p.terminate()  # SIGTERM: the worker stops at its next batch and records its trial
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
            p.join()
    _fail_orphans({p.pid for p in procs}, settings)


def _fail_orphans(pids: set[int], settings: TuneSettings) -> None:
    """Trials still RUNNING under a worker we just stopped are failed now, not left for the heartbeat."""
    storage = studies.open_storage(settings.storage_url, None)
    study = optuna.load_study(study_name=settings.study, storage=storage)
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        if worker.startswith(f"{host}:") and int(worker.split(":")[-1]) in pids:
            storage.set_trial_user_attr(t._trial_id, "reason", "interrupted")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)


# ----------------------------------------------------------------------------- reading studies (plain data out)


def open_study(name: str, storage: str | None = None, root: str | Path = studies.ROOT) -> optuna.Study:
    _quiet_optuna()
    studies.check_root(root)
    url = storage or studies.default_storage_url(name, Path(root))
    st = studies.open_storage(url, None, create=False)
    try:
        return optuna.load_study(study_name=name, storage=st)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
        raise StudyError(f"no study '{name}' in {studies.mask_url(url)}" + (f"; studies there: {', '.join(names)}" if names else "")) from None


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    u = t.user_attrs
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "params": u.get("params", t.params),
        "config": u.get("config"),
        "train_error": u.get("train_error"),
        "dev_error": u.get("dev_error", t.value),
        "best_epoch": u.get("best_epoch"),
        "epochs": u.get("epochs_run", len(u.get("curve", []))),
        "seconds": u.get("seconds"),
        "reason": u.get("reason", "worker died" if t.state == TrialState.FAIL else t.state.name.lower()),
        "curve": u.get("curve", []),
        "checkpoint": u.get("checkpoint"),
        "artifact": u.get("artifact"),
        "retry_of": u.get("retry_of"),
    }


def summarize(study: optuna.Study, storage_url: str | None = None, top: int = 10) -> dict[str, Any]:
    """Everything `show`, `tune --json` and the report print: one source of truth."""
    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
    records = [trial_record(t) for t in trials]
    complete = sorted((r for r in records if r["state"] == "COMPLETE"), key=lambda r: r["value"])
    meta = study.user_attrs.get(ATTR, {})
    max_epochs = meta.get("space", {}).get("epochs", 0)
    used = sum(r["epochs"] or 0 for r in records)
    saved = sum(max(0, max_epochs - (r["epochs"] or 0)) for r in records if r["state"] == "PRUNED")
    best = None
    if complete:
        b = complete[0]
        best = {k: b[k] for k in ("number", "value", "params", "train_error", "dev_error", "best_epoch", "epochs", "config")}
    return {
        "study": study.study_name,
        "storage": studies.mask_url(storage_url) if storage_url else None,
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


def _wall_seconds(trials: list[FrozenTrial]) -> float | None:
    """First trial's start to the last trial's end (a resumed study's pause included)."""
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete or t.datetime_start for t in trials if t.datetime_start]
    return (max(ends) - min(starts)).total_seconds() if starts else None


def importances(study: optuna.Study, min_complete: int = 5) -> dict[str, float] | None:
    """Optuna's parameter importances (fANOVA) once enough trials are complete."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < min_complete:
        return None
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError):
        return None


def progress_of(study: optuna.Study, settings: TuneSettings, start: float) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    elapsed = time.time() - start
    remaining = None
    if settings.timeout:
        remaining = max(0.0, settings.timeout - elapsed)
    done = states["COMPLETE"] + states["PRUNED"]
    return {"states": states, "best": min(values) if values else None, "elapsed": elapsed,
            "remaining": remaining, "done": done, "target": settings.n_trials}


def list_studies(storage: str | None = None, root: str | Path = studies.ROOT) -> list[dict[str, Any]]:
    """Every study in `storage`, or in each studies/<name>/study.db under root.

    Under root, a study file that cannot be read is listed as unreadable (with the reason)
    and the others are still listed: one damaged folder must not hide the rest.
    """
    _quiet_optuna()
    studies.check_root(root)
    urls = [storage] if storage else [f"sqlite:///{p.resolve()}" for p in sorted(Path(root).glob("*/study.db"))]
    out = []
    for url in urls:
        try:
            st = studies.open_storage(url, None, create=False)
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
                          "storage": studies.mask_url(url)})
    return out
