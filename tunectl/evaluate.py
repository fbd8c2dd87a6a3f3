"""The one recorded look at the test set (`tunectl evaluate`) and a trial's export (`tunectl export`).

Neither `train.py` (which knows no studies) nor `tune.py` (which never holds the test
split) owns these. Here a study is read as plain data from `tune.py`, its split is
rebuilt *with* the test part and proven identical by the manifest hashes, and the
chosen trial's checkpoint is evaluated. Every look at the test set is appended to
`studies/<study>/evaluations.json`, because a test error you have looked at twice
(and chosen by) is no longer an unbiased estimate of the error on new data.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from tunectl import attacks, studies
from tunectl.builders import file_of, is_reference, unchanged
from tunectl.errors import ConfigError, StudyError
from tunectl import files, runs

SUPERSEDED = 3  # tune keeps the best 3 trials' weights (tune.KEEP_CHECKPOINTS): one with 3 better ones lost its own
REUSED_WARNING = ("the test set was evaluated before: this test error is no longer an unbiased estimate of the "
                  "error on new data (every look is in {path})")


# ----------------------------------------------------------------------------- reading a study


@dataclasses.dataclass
class Chosen:
    study: str
    folder: Path
    meta: dict[str, Any]  # the study's 'tunectl' record: data, manifest, space, ...
    record: dict[str, Any]  # tune.trial_record of the chosen trial
    kept: list[int]  # complete trials whose checkpoint file is on disk, best first
    better_kept: int = 0  # of those, how many rank above the chosen trial
    optuna_study: Any = None  # the optuna.Study: where test looks are recorded too

    @property
    def checkpoint(self) -> Path | None:
        from tunectl.results import checkpoint_path

        return checkpoint_path(self.folder, self.record)


def choose(study: str, trial: int | None = None, root: Path | str = studies.ROOT, storage: str | None = None) -> Chosen:
    """The study's best complete trial, or trial `trial` (which must be complete)."""
    from tunectl.results import ATTR, checkpoint_path, open_study, pick_trial, trial_records

    st = open_study(study, storage, root)
    meta = st.user_attrs.get(ATTR)
    if not meta:
        raise StudyError(f"study '{study}' was not made by tunectl; evaluate a study from `tunectl studies`")
    folder = studies.study_dir(study, Path(root))
    records = trial_records(st, folder)
    record = pick_trial(records, study, trial, complete=True)
    complete = sorted((r for r in records if r["state"] == "COMPLETE"), key=lambda r: (r["value"], r["number"]))
    kept = [r["number"] for r in complete if checkpoint_path(folder, r) is not None]
    better = sum(1 for r in complete if r["number"] in kept and (r["value"], r["number"]) < (record["value"], record["number"]))
    return Chosen(study, folder, meta, record, kept, better, st)


def _check_not_deleted(c: Chosen, fix: str) -> None:
    """A trial that kept a checkpoint whose file is gone (deleted, moved, a lost --artifacts mount)
    is told apart from one that never kept weights: the message names the missing file."""
    ref = c.record.get("checkpoint")
    if not ref or c.checkpoint is not None:
        return
    if c.better_kept >= SUPERSEDED:  # kept once, then removed by better trials (only the best few keep weights)
        return
    path = c.folder / ref
    kept = ", ".join(map(str, c.kept)) or "none"
    what = "is a folder, not a checkpoint" if path.is_dir() else "is missing (deleted or moved?)"
    raise StudyError(f"trial {c.record['number']} of '{c.study}': its checkpoint {path} {what}; {fix} "
                     f"(trials with weights: {kept})")


def study_splits(meta: dict[str, Any], include_test: bool):
    """The study's splits, checked against its manifest (the data must not have changed since tuning)."""
    from tunectl.data import DataSettings, load_splits, same_split

    d = meta["data"]
    splits = load_splits(DataSettings.from_dict(d), include_test=include_test, stored=meta["manifest"])
    if not same_split(meta["manifest"], splits.manifest):
        raise StudyError(
            f"the data no longer produce the study's split (split hash mismatch for {d['dataset']}): the data "
            f"changed since tuning; restore the original data, or tune a new study on the new data"
        )
    return splits


# ----------------------------------------------------------------------------- evaluate


def evaluate_study(study: str, trial: int | None = None, refit: bool = False, root: Path | str = studies.ROOT,
                   storage: str | None = None, device: str | None = None, allow_changed: bool = False,
                   attack: str | None = None, eps: float | None = None, steps: int | None = None) -> dict[str, Any]:
    """Evaluate the chosen trial on test, dev and train once, and record that look.

    With `attack` (fgsm | pgd) the test error under that attack (budget `eps`, standardized units;
    `steps` for PGD) is measured too and recorded in the same look."""
    from tunectl.models import load_checkpoint, model_from_checkpoint
    from tunectl.train import evaluate, pick_device

    attacks.check(attack, eps, steps)
    dev_ = pick_device(device)  # an unknown or absent device: one line before any work
    c = choose(study, trial, root, storage)
    rec, n = c.record, c.record["number"]
    studies.read_evaluations(c.folder)  # a damaged record refuses before any work
    model_ref = (rec.get("config") or {}).get("model")
    if is_reference(model_ref):  # your own builder: the file must still be the one tuned, or --allow-changed-model
        rec = {**rec, "config": {**rec["config"], "model_sha256": unchanged(
            model_ref, rec["config"].get("model_sha256"), allow_changed)}}
        c = dataclasses.replace(c, record=rec)
    ckpt = None
    if not refit:
        _check_not_deleted(c, "add --refit to retrain it, or choose another --trial")
        if c.checkpoint is None:
            kept = ", ".join(map(str, c.kept)) or "none"
            raise StudyError(f"trial {n} of '{study}' kept no weights (only the best few complete trials do; "
                             f"kept: {kept}); add --refit to retrain it, or choose a kept --trial")
        ckpt = load_checkpoint(c.checkpoint)  # weights_only: a planted file is refused, not run
    splits = study_splits(c.meta, include_test=True)
    if ckpt is not None and ckpt.get("manifest") and ckpt["manifest"].get("hashes") != splits.manifest["hashes"]:
        raise StudyError(f"{c.checkpoint}: was trained on another split than study '{study}'; "
                         f"it does not belong to this study")
    if attack and splits.vocab:
        raise ConfigError(f"--attack {attack}: moves numeric inputs, but study '{study}' reads token ids "
                          f"(characters or npz integers); evaluate it without --attack")
    if refit:
        model, epochs, model_path, fit_on = _refit(c, splits, dev_)
    else:
        model, _ = model_from_checkpoint(ckpt, allow_changed)
        model, epochs, model_path, fit_on = model.to(dev_), rec.get("best_epoch"), c.checkpoint, splits
    from tunectl.train import error_se, train_sample

    def err(x, y, rows=None) -> tuple[float, float | None]:  # the error and its standard error (noise.py)
        e = evaluate(model, x, y, splits.task, splits.y_scale, dev_, rows)["error"]
        return e, error_se(model, x, y, splits.task, splits.y_scale, e, dev_, rows)

    test_error, test_se = err(*splits.test)
    # the train error as every trial measures it: eval mode, on the split's fixed training sample
    train_error, train_se = err(fit_on.x_train, fit_on.y_train, train_sample(fit_on).to(dev_))
    # after a refit the dev split was trained on: its error is not a held-out number
    dev_error, dev_se = (None, None) if refit else err(splits.x_dev, splits.y_dev)
    robust = None
    if attack:
        x_test, y_test = splits.test
        x_adv = attacks.perturb(model, x_test, y_test, splits.task, attack, eps, steps,
                                attacks.image_bounds(splits.x_train, splits.is_image), dev_)
        robust_error, robust_se = err(x_adv, y_test)
        robust = {"name": attack, "eps": float(eps), "steps": (steps or 10) if attack == "pgd" else None,
                  "eps_input": attacks.in_input_units(float(eps), splits.x_scale),
                  "test_error": robust_error, "test_error_se": robust_se, "clean_test_error": test_error}
    path = c.folder / studies.EVALUATIONS
    look = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "trial": n, "refit": refit, "test_error": test_error,
            "dev_error": dev_error, "train_error": train_error, "test_error_se": test_se, "dev_error_se": dev_se,
            "train_error_se": train_se, **({"attack": robust} if robust else {})}
    looks = record_look(c, look)
    evaluated_before = bool(looks)
    return {
        "study": study,
        "trial": n,
        "refit": refit,
        "test_error": test_error,
        "dev_error": dev_error,
        "train_error": train_error,
        "attack": robust,
        "test_error_se": test_se,
        "dev_error_se": dev_se,
        "train_error_se": train_se,
        "picked_by": rec.get("picked_by", "number" if trial is not None else "dev error"),
        "rechecked": {k: v for k, v in rec["recheck"].items() if k != "seeds"} if rec.get("recheck") else None,
        "trained_on": "train+dev" if refit else "train",
        "epochs": epochs,
        "tuned_dev_error": rec.get("dev_error"),
        "evaluated_before": evaluated_before,
        "evaluations": len(looks) + 1,
        "warning": REUSED_WARNING.format(path=path) if evaluated_before else None,
        "task": splits.task,
        "sizes": splits.manifest["sizes"],
        "model": str(model_path),
        "record": str(path),
    }


def record_look(c: Chosen, look: dict[str, Any]) -> list[dict[str, Any]]:
    """Record one look at the test set in the study (so that every machine on a shared storage, and
    optuna-dashboard, sees it) and in the study folder's evaluations.json (a readable copy); return
    the other looks. Each look is its own study attribute, so two machines evaluating at once both
    count, and each is told about the other: the record is written first, then read back."""
    import os
    import socket

    import uuid

    # unique even for two looks in one second from one process (a script evaluating two trials)
    look = {**look, "id": f"{look['time']} {socket.gethostname()}:{os.getpid()} {uuid.uuid4().hex[:8]}",
            "at": time.time()}  # `time` has whole seconds: two looks in one second keep their order by this
    local = studies.append_evaluation(c.folder, look)  # under this machine's lock
    if c.optuna_study is None:
        return local
    from tunectl.results import LOOK_PREFIX, test_looks

    c.optuna_study.set_user_attr(f"{LOOK_PREFIX}{look['id']}", look)
    return [v for v in test_looks(c.optuna_study, c.folder) if v.get("id") != look["id"]]


def _refit(c: Chosen, splits, device):
    """Retrain the trial's configuration on train+dev for its best epoch count (the usual final step)."""
    import torch

    from tunectl.config import from_dict
    from tunectl.models import save_checkpoint
    from tunectl.train import fit

    n, epochs = c.record["number"], int(c.record.get("best_epoch") or 0)
    if epochs < 1:
        raise StudyError(f"trial {n} of '{c.study}' records no best epoch; it cannot be refit")
    cfg = from_dict(c.record["config"]).replace(epochs=epochs, patience=0)  # same seed: the trial's
    # train+dev, scaled as in tuning (training statistics); dev chose the epoch count before
    both = dataclasses.replace(splits, x_train=torch.cat([splits.x_train, splits.x_dev]),
                               y_train=torch.cat([splits.y_train, splits.y_dev]))
    hist = fit(cfg, both, device=device, keep_last=True)
    if hist.model is None:
        raise StudyError(f"the refit of trial {n} diverged (loss became NaN); evaluate without --refit")
    path = c.folder / "refit" / f"trial-{n}.pt"  # the model to use: trained on all but the test split
    save_checkpoint(path, hist.checkpoint({"data": c.meta["data"], "trial": n, "refit": True,
                                           "manifest": splits.manifest}))
    return hist.model, epochs, path, both


# ----------------------------------------------------------------------------- export


README = """# {study}, trial {trial}

Exported by `tunectl export` on {time}.

| | |
|---|---|
| dev error | {dev_error} (best epoch {best_epoch} of {epochs}) |
| train error | {train_error} |
| data | `{dataset}`, split seed {split_seed}, sizes {sizes} |
| params | {params} |

Reproduce the trial (same data, same seed; on the CPU the dev error comes out identical):

```
tunectl train --params {params_path}
```

- `params.yaml`: every TrainConfig field and a `data:` section (data set, split seed); the command above reads it.
- `model.pt`: the trial's weights at its best epoch, a tunectl checkpoint (plain tensors and settings,
  loaded with `weights_only=True`). In Python:
  `from tunectl.models import load_checkpoint, model_from_checkpoint; model, cfg = model_from_checkpoint(load_checkpoint("{model_path}"))`.
  Inputs are standardized with the training split's mean and standard deviation, as `tunectl train` does.
- `split.json`: the split manifest (seed, sizes, a hash of each split's indices, a hash of the data), the
  input scaling and, for a table, its preprocessing record (columns, types, categories, medians).

Predict with it, in any folder (the bundle carries its preprocessing). `model.onnx` (with
`export --format onnx`) is the same model with the input scaling folded in: input `x`, the encoded
features (for a table, in the order of split.json's `preprocessing.features`); output `y`, the
class probabilities (or the prediction in the target's units).

```
tunectl predict {out} --dataset csv:new.csv --out predictions.csv
```
{transfer}"""


def export_trial(study: str, out: Path | str, trial: int | None = None, root: Path | str = studies.ROOT,
                 storage: str | None = None, allow_changed: bool = False, onnx: bool = False) -> dict[str, Any]:
    """params.yaml, model.pt, split.json and README.md for one trial, from its kept checkpoint; with
    `onnx`, model.onnx too (the input scaling folded in: `inference.Predictor`)."""
    from tunectl.config import from_dict
    from tunectl.models import load_checkpoint

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty folder; give a new folder (export never overwrites)")
    files.check_new_folder(out)
    c = choose(study, trial, root, storage)
    rec, n = c.record, c.record["number"]
    _check_not_deleted(c, "restore it, or export another --trial")
    if c.checkpoint is None:
        kept = ", ".join(map(str, c.kept)) or "none"
        raise StudyError(f"trial {n} of '{study}' kept no weights (only the best complete trials do; kept: {kept}); "
                         f"export one of those with --trial")
    load_checkpoint(c.checkpoint)  # refuse anything that is not a tunectl checkpoint before copying it
    cfg = from_dict(rec["config"])
    builder = None
    if is_reference(cfg.model):  # your own builder travels with the bundle, the params file naming the copy
        cfg = cfg.replace(model_sha256=unchanged(cfg.model, cfg.model_sha256, allow_changed))
        builder = file_of(cfg.model)
    from tunectl.data import DataSettings

    data = DataSettings.from_dict(c.meta["data"])
    with files.NewFolder(out, fallback=False) as bundle:  # the bundle appears whole, or not at all
        _write_bundle(bundle.path, out, study, c, cfg, data, builder)
        if onnx:
            _write_onnx(bundle.path / "model.onnx", c, allow_changed)
    return {
        "study": study,
        "trial": n,
        "out": str(out),
        "files": ["params.yaml", "model.pt", "split.json", "README.md", *([builder.name] if builder else []),
                  *(["model.onnx"] if onnx else [])],
        "dev_error": rec.get("dev_error"),
        "train_error": rec.get("train_error"),
        "params": rec.get("params"),
        "picked_by": rec.get("picked_by", "number" if trial is not None else "dev error"),
        "rechecked": {k: v for k, v in rec["recheck"].items() if k != "seeds"} if rec.get("recheck") else None,
        "command": f"tunectl train --params {out / 'params.yaml'}",
    }


def _write_onnx(path: Path, c: Chosen, allow_changed: bool) -> None:
    """model.onnx: the trial's Predictor (scaling, model, probabilities or target units) as ONNX."""
    from tunectl.inference import predictor, write_onnx
    from tunectl.models import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(c.checkpoint)
    model, _ = model_from_checkpoint(ckpt, allow_changed)
    task = ckpt.get("task") or c.meta["manifest"].get("task")
    write_onnx(predictor(model, c.meta["manifest"], task, f"study '{c.study}'"), tuple(ckpt["input_shape"]), path)


def _write_bundle(folder: Path, out: Path, study: str, c: Chosen, cfg, data, builder: Path | None = None) -> None:
    """The export's files, written into `folder`; the README names their final place, `out`."""
    import shutil

    rec, n = c.record, c.record["number"]
    if builder is not None:  # params.yaml names the copy, relative to itself: the bundle is whole
        shutil.copyfile(builder, folder / builder.name)
        cfg = cfg.replace(model=f"{builder.name}:{cfg.model.rpartition(':')[2]}")
    files.write_text(folder / "params.yaml", runs.params_text(cfg, data))
    shutil.copyfile(c.checkpoint, folder / "model.pt")
    files.write_json(folder / "split.json", c.meta["manifest"])
    transfer = ""
    if cfg.model == "transfer":
        transfer = (f"\nThis is a transferred model: reproducing it needs the source checkpoint `{cfg.init_from}` "
                    f"(init_from in params.yaml) at that path.\n")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    files.write_text(folder / "README.md", README.format(
        study=study, trial=n, time=time.strftime("%Y-%m-%d %H:%M:%S"), dev_error=fmt(rec.get("dev_error")),
        train_error=fmt(rec.get("train_error")), best_epoch=rec.get("best_epoch"), epochs=rec.get("epochs"),
        dataset=data.dataset, split_seed=data.split_seed, sizes=c.meta["manifest"].get("sizes"),
        params=", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in (rec.get("params") or {}).items()) or "-",
        params_path=out / "params.yaml", model_path=out / "model.pt", out=out, transfer=transfer))
