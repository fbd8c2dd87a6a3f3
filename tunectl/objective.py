"""One trial: sample the hyperparameters, train, report each epoch to the pruner, keep the best weights.

One trial = one `train.fit` call. Each epoch's dev error is reported to Optuna, whose
pruner (Hyperband by default) may stop the trial; the best few complete trials keep their
weights in the study's artifact store. Ten trials failing in a row stop the study.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunectl import studies, workers
from tunectl.numbers import clean
from tunectl.space import suggest, trial_config

MAX_CONSECUTIVE_FAILURES = 10  # that many failures in a row is a misconfiguration, not bad luck


class Objective:
    """Optuna's objective for a study's settings (a tune.TuneSettings) on its training and dev splits;
    `base` is the TrainConfig under the space, `on_start` is called once the trial is running."""

    def __init__(self, settings: Any, splits, base, device=None, on_start: Callable[[], None] = lambda: None):
        self.settings, self.splits, self.device, self.on_start = settings, splits, device, on_start
        self.base = base

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
        from tunectl.train import batch_size_for, fit

        s = self.settings
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        self.on_start()  # the trial is RUNNING and signed: other workers may count it and start theirs
        # a retried trial (its worker died) carries the number of the original in system attrs
        me = next(t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number == trial.number)
        retried = optuna.storages.RetryFailedTrialCallback.retried_trial_number(me)
        if retried is not None:
            trial.set_user_attr("retry_of", retried)
        workers.check_stop()  # a stop asked while Optuna created this trial: record it as interrupted
        chosen = suggest(trial, s.space)
        cfg = trial_config(s.space, chosen, self.base)
        trial.set_user_attr("params", chosen)
        trial.set_user_attr("config", cfg.to_dict())
        # a batch at least as large as the training split is the full batch: the size actually used
        trial.set_user_attr("batch_size_used", batch_size_for(cfg, len(self.splits.x_train)))
        pruned_at: list[int] = []

        def on_epoch(epoch: int, m: dict[str, float]) -> bool:
            curve.append(clean(m))
            if not math.isfinite(m["dev_error"]):
                return True
            trial.report(m["dev_error"], epoch)
            if trial.should_prune():
                pruned_at.append(epoch)
                return True
            return False

        hist = fit(cfg, self.splits, on_epoch=on_epoch, on_batch=workers.check_stop, device=self.device)
        trial.set_user_attr("curve", curve)
        trial.set_user_attr("train_error", clean(hist.train_error))
        trial.set_user_attr("dev_error", clean(hist.dev_error))
        trial.set_user_attr("dev_error_se", clean(hist.dev_error_se))  # noise.py: how far apart is 'better'
        trial.set_user_attr("train_error_se", clean(hist.train_error_se))
        trial.set_user_attr("best_epoch", hist.best_epoch)
        trial.set_user_attr("epochs_run", hist.epochs_run)
        trial.set_user_attr("seconds", hist.seconds)
        studies.write_curve(s.folder, trial.number, curve)
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
            trial.set_user_attr("checkpoint", checkpoint_ref(s, artifact))
        for _, number, artifact in done:
            if artifact and number not in keep:
                try:
                    store.remove(artifact)
                except ArtifactNotFound:  # removed before, by this or another worker
                    pass


def checkpoint_ref(settings: Any, artifact: str) -> str:
    """The stored file, relative to the study folder when inside it, else absolute (a shared --artifacts)."""
    path = (settings.artifact_dir / artifact).resolve()
    try:
        return str(path.relative_to(settings.folder.resolve()))
    except ValueError:
        return str(path)


def stop_after_failures(study: optuna.Study, trial: FrozenTrial) -> None:
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

