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

from tunectl import checkpoints, studies, workers
from tunectl.numbers import clean
from tunectl.space import suggest, trial_config

MAX_CONSECUTIVE_FAILURES = 10  # that many failures in a row is a misconfiguration, not bad luck


class Objective:
    """Optuna's objective for a study's settings (a tune.TuneSettings) on its training and dev splits;
    `base` is the TrainConfig under the space, `on_start` is called once the trial is running,
    `storage` is the study's Optuna storage (where kept checkpoints are listed)."""

    def __init__(self, settings: Any, splits, base, device=None, on_start: Callable[[], None] = lambda: None,
                 storage=None):
        self.settings, self.splits, self.device, self.on_start = settings, splits, device, on_start
        self.base, self.storage = base, storage

    def __call__(self, trial: optuna.Trial) -> float:
        curve = Curve()
        try:
            return self._run(trial, curve)
        except KeyboardInterrupt:
            trial.set_user_attr("reason", "interrupted")
            self._record_curve(trial, curve)
            raise
        except optuna.TrialPruned:
            raise
        except Exception as e:  # noqa: BLE001 - recorded with its message, and the study goes on
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            trial.set_user_attr("reason", f"failed: {type(e).__name__}: {msg}"[:500])
            self._record_curve(trial, curve)
            raise

    def _record_curve(self, trial: optuna.Trial, curve: "Curve") -> None:
        """The curve whole in trials/N/curve.json; in the trial only the per-epoch train error (its
        dev error is the trial's intermediate values already)."""
        if not curve:
            return
        studies.write_curve(self.settings.folder, trial.number, curve)
        trial.set_user_attr("train_errors", train_errors(curve, curve.of, self.splits.task))

    def _run(self, trial: optuna.Trial, curve: "Curve") -> float:
        from tunectl.train import batch_size_for, fit, train_sample_size

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
        # the params and the config are the trial's params and the study's record (results.trial_record
        # rebuilds them); a batch at least as large as the training split is the full batch: recorded
        # only then, as the size actually used
        used = batch_size_for(cfg, len(self.splits.x_train))
        if used != cfg.batch_size:
            trial.set_user_attr("batch_size_used", used)
        pruned_at: list[int] = []
        curve.of = train_sample_size(self.splits, cfg)  # what each epoch's train error is a rate over

        def on_epoch(epoch: int, m: dict[str, float]) -> bool:
            curve.append(clean(m))
            if not math.isfinite(m["dev_error"]):
                return True
            # the pruner (and optuna-dashboard's intermediate values) get dev error; the eval-mode train
            # error goes to the user attribute train_errors, the running averages only to curve.json
            trial.report(m["dev_error"], epoch)
            # never at the last epoch: the trial has cost all it will, and pruned it would be neither complete
            # (no checkpoint, left out of the leaderboard and the importances) nor cheaper (a Hyperband rung can
            # fall on the last epoch: 3 epochs x 3 = a space of 9)
            if epoch < cfg.epochs and trial.should_prune():
                pruned_at.append(epoch)
                return True
            return False

        hist = fit(cfg, self.splits, on_epoch=on_epoch, on_batch=workers.check_stop, device=self.device)
        self._record_curve(trial, curve)
        trial.set_user_attr("train_error", clean(hist.train_error))
        # the standard errors (noise.py: how far apart is 'better'): a regression's bootstrap cannot be rebuilt
        trial.set_user_attr("dev_error_se", clean(hist.dev_error_se))
        trial.set_user_attr("train_error_se", clean(hist.train_error_se))
        trial.set_user_attr("best_epoch", hist.best_epoch)
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
        """Keep the weights of the best few trials only (checkpoints.keep_best), in Optuna's artifact
        store: the study's artifacts/, or --artifacts (a path every worker mounts)."""
        from tunectl.models import save_checkpoint

        s = self.settings
        if self.storage is None or hist.model is None:
            return
        complete = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        done = [(t.value, t.number) for t in complete]
        legacy = {t.number: t.user_attrs["artifact"] for t in complete if t.user_attrs.get("artifact")}
        save = lambda path: save_checkpoint(path, hist.checkpoint(  # noqa: E731
            {"data": s.data, "trial": trial.number, "manifest": self.splits.manifest}))
        checkpoints.keep_best(self.storage, s.study, trial.number, hist.dev_error, done, s.keep,
                              studies.artifact_store(s.artifact_dir), save, lambda a: checkpoint_ref(s, a), legacy)


class Curve(list):
    """A trial's curve rows, and `of`: how many training examples each epoch's train error is a rate over
    (the fixed sample's size, train.train_sample; the training split's with fast_curves)."""

    of: int = 0


def train_errors(curve: list[dict[str, Any]], n: int, task: str) -> Any:
    """Each epoch's train error, compactly and exactly: for classification the count of training
    examples misclassified ({"wrong": [...], "of": n}; wrong / of is the error, to the last bit),
    else the errors themselves. A diverged epoch is null. `n`: the examples the errors are rates over."""
    errors = [row.get("train_error") for row in curve]
    if task != "regression" and n > 0:
        wrong = [None if e is None else round(e * n) for e in errors]
        if all(w is None or w / n == e for w, e in zip(wrong, errors)):
            return {"wrong": wrong, "of": n}
    return errors


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

