"""Bias/variance diagnosis: what limits a model, the evidence for it, and what to search next.

The practitioner's recipe: compare train error with human-level error (the avoidable
bias) and dev error with train error (the variance); fix the larger problem, bias first.
Curves add evidence (still improving, overfitting from epoch k, a flat loss), a learning
curve over training-set size says whether more data would help, and the actions are
written in this study's own hyperparameters, down to the next search-space file.

Plain data in, plain data out: trial records and run folders arrive as dicts (cli.py
reads studies through tune.py); nothing here knows Optuna, Typer or rich.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunectl.advice import is_image_data, recommend
from tunectl.config import from_dict, short
from tunectl.numbers import clean
from tunectl.errors import TunectlError
from tunectl import files, noise

VERDICTS = ("high_bias", "high_variance", "high_bias_high_variance", "ok")
# Error rates: absolute points (0.02 = 2 %). With human error ~0 the textbook table comes out
# as taught: train/dev 1/11 % high variance, 15/16 % high bias, 15/30 % both, 0.5/1 % fine.
CLASSIFICATION_THRESHOLD = 0.02
# Regression errors are RMSE in the target's units; predicting the mean scores about one standard
# deviation of the targets, so thresholds there are a fraction of that spread.
REGRESSION_THRESHOLD = 0.10
NOISE = 0.1  # curve changes smaller than this share of the variance threshold are noise
FLAT_LOSS = 0.02  # training loss that never fell 2 % below its first epoch is 'flat'
LOSS_SPIKE = 1.5  # an epoch's training loss above 1.5x the lowest before it: a spike, not noise
CURVE_FRACTIONS = (0.10, 0.25, 0.50, 1.00)


@dataclass(frozen=True)
class Thresholds:
    """When bias or variance counts as high. None: the task's default (see above)."""

    bias: float | None = None
    variance: float | None = None

    def __post_init__(self) -> None:  # a negative, NaN or infinite threshold is refused when given
        self.absolute("multiclass", None)

    def absolute(self, task: str, spread: float | None) -> tuple[float, float]:
        default = REGRESSION_THRESHOLD if task == "regression" else CLASSIFICATION_THRESHOLD
        unit = (spread or 1.0) if task == "regression" else 1.0
        out = []
        for flag, value in (("--bias-threshold", self.bias), ("--variance-threshold", self.variance)):
            value = default if value is None else value
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value)
                                                                                      and value >= 0):
                raise TunectlError(f"{flag} {short(value, 40)}: must be a finite number >= 0, e.g. {default}")
            out.append(value * unit)
        return out[0], out[1]


@dataclass
class Diagnosis:
    train_error: float
    dev_error: float
    human_error: float
    avoidable_bias: float
    variance: float
    diagnosis: str
    task: str = "multiclass"
    thresholds: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)  # per epoch: train/dev error and train loss
    data_curve: list[dict[str, Any]] | None = None
    data_verdict: str | None = None  # more_data_helps | flat
    dev_error_se: float | None = None  # noise.py: the standard error of each error, and of the gap
    train_error_se: float | None = None
    variance_se: float | None = None
    source: dict[str, Any] = field(default_factory=dict)  # study and trial, or run folder

    def to_dict(self) -> dict[str, Any]:
        d = {k: clean(v) for k, v in asdict(self).items()}
        if self.data_curve is None:  # the key is there only when a data curve was asked for
            d.pop("data_curve")
            d.pop("data_verdict")
        return d


def check_human_error(value: Any, task: str | None = None) -> float:
    """--human-error: a finite number >= 0; for classification an error rate, so below 1."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        shown = f"{value:g}" if isinstance(value, float) else short(value, 40)
        raise TunectlError(f"--human-error {shown}: must be a finite number >= 0 (an error rate such as "
                           f"0.01, or an RMSE in the target's units for regression)")
    if task not in (None, "regression") and value >= 1:
        raise TunectlError(f"--human-error {value:g}: an error rate must be below 1 (0.05 = 5 %); "
                           f"for a percentage, divide by 100")
    return float(value)


def within_noise(variance: float, variance_se: float | None) -> bool:
    """A train/dev gap less than two of its standard errors: the dev set cannot tell it from noise."""
    return variance_se is not None and variance_se > 0 and variance < noise.Z * variance_se


def verdict(avoidable_bias: float, variance: float, bias_threshold: float, variance_threshold: float,
            variance_se: float | None = None) -> str:
    """A gap above the threshold but within noise (variance_se) is not called variance."""
    bias_high = avoidable_bias > bias_threshold
    var_high = variance > variance_threshold and not within_noise(variance, variance_se)
    if bias_high and var_high:
        return "high_bias_high_variance"
    return "high_bias" if bias_high else "high_variance" if var_high else "ok"


def diagnose(train_error: float, dev_error: float, human_error: float = 0.0, task: str = "multiclass",
             curve: list[dict[str, Any]] | None = None, target_spread: float | None = None,
             thresholds: Thresholds = Thresholds(), *, config: dict[str, Any] | None = None,
             space: dict[str, Any] | None = None, image: bool = False,
             data_curve: list[dict[str, Any]] | None = None, dev_error_se: float | None = None,
             train_error_se: float | None = None, n_dev: int | None = None) -> Diagnosis:
    """The four numbers, the verdict, the curves' evidence, and actions in `config`'s terms. With the
    errors' standard errors, a gap within twice its own is not called variance (see noise_evidence)."""
    human_error = check_human_error(human_error, task)
    for name, v in (("train error", train_error), ("dev error", dev_error)):
        if v is None or not math.isfinite(v):
            raise TunectlError(f"{name} is {v}: the model has no finite error (it diverged?); diagnose another trial")
    tb, tv = thresholds.absolute(task, target_spread)
    bias, var = train_error - human_error, dev_error - train_error
    var_se = noise.diff_se(dev_error_se, train_error_se)
    d = Diagnosis(train_error, dev_error, human_error, bias, var, verdict(bias, var, tb, tv, var_se), task,
                  {"bias": tb, "variance": tv, "unit": "target units" if task == "regression" else "error rate"},
                  dev_error_se=dev_error_se, train_error_se=train_error_se, variance_se=var_se)
    d.curve = [{"epoch": r.get("epoch"), "train_error": r.get("train_error"), "dev_error": r.get("dev_error"),
                "train_loss": r.get("train_loss")} for r in curve or []]
    d.evidence = curve_evidence(curve or [], tv * NOISE)
    if var > tv and within_noise(var, var_se):
        d.evidence.insert(0, noise_evidence(var, var_se, dev_error_se, train_error_se or 0.0, n_dev))
    if data_curve:
        d.data_curve = data_curve
        d.data_verdict, text = data_curve_verdict(data_curve, tv)
        d.evidence.append({"kind": d.data_verdict, "text": text})
    d.actions = recommend(d, from_dict(config or {}).to_dict(), space, image)
    return d


def noise_evidence(var: float, var_se: float, dev_se: float | None, train_se: float, n_dev: int | None) -> dict[str, Any]:
    """Why a gap above the threshold is not called variance: the dev set is too small to tell, and how
    many dev examples would tell a gap this size."""
    text = (f"the train/dev gap {var:.4g} is above the variance threshold but less than two standard errors "
            f"(2 × {var_se:.2g}): the dev set{f' ({n_dev} examples)' if n_dev else ''} is too small to tell it "
            f"from noise, so it is not called variance")
    need = noise.dev_size_needed(var, dev_se, n_dev, train_se) if dev_se and n_dev else None
    if need:
        text += f"; to tell a gap this size it would need about {need} examples ({need / n_dev:.1f}× as many)"
    elif n_dev:
        text += "; the training error's own noise is as large: more dev data alone would not settle it"
    return {"kind": "dev_too_small", "n_dev": n_dev, "dev_needed": need, "text": text}


# ----------------------------------------------------------------------------- evidence from the curves


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def curve_evidence(curve: list[dict[str, Any]], noise: float) -> list[dict[str, Any]]:
    """What the per-epoch curves say: diverged, a loss spike, flat loss, overfitting from epoch k, still improving."""
    out: list[dict[str, Any]] = []
    bad = next((r for r in curve if not (_finite(r.get("train_loss")) and _finite(r.get("dev_error")))), None)
    if bad is not None:
        out.append({"kind": "diverged", "epoch": bad.get("epoch"),
                    "text": f"the loss became NaN/inf at epoch {bad.get('epoch')}: lr too high (or inputs unscaled)"})
    rows = [r for r in curve if _finite(r.get("train_loss")) and _finite(r.get("dev_error"))]
    if len(rows) < 2:
        return out
    losses, dev = [r["train_loss"] for r in rows], [r["dev_error"] for r in rows]
    spike = next((i for i in range(1, len(losses)) if losses[i] > LOSS_SPIKE * min(losses[:i]) > 0), None)
    if spike is not None:
        out.append({"kind": "loss_spike", "epoch": rows[spike]["epoch"],
                    "text": f"the training loss jumped at epoch {rows[spike]['epoch']} ({min(losses[:spike]):.3g} → "
                            f"{losses[spike]:.3g}, more than {LOSS_SPIKE:g}x its lowest before): exploding gradients "
                            "(clip them) or a learning rate too high"})
    if losses[0] > 0 and (losses[0] - min(losses[1:])) / losses[0] < FLAT_LOSS:
        out.append({"kind": "flat_loss", "epoch": rows[0]["epoch"],
                    "text": f"training loss flat from the start ({losses[0]:.3g} → {losses[-1]:.3g}): "
                            "the learning rate (too small, or too large to settle) or the initialization"})
    k = min(range(len(dev)), key=dev.__getitem__)  # the best epoch (first of ties)
    train_err = rows[-1].get("train_error")
    gap = not _finite(train_err) or dev[-1] > train_err  # a dev error above train error, not just noise
    if len(rows) - 1 - k >= 2 and dev[-1] > dev[k] + 2 * noise and losses[-1] < losses[k] and gap:
        out.append({"kind": "overfitting", "epoch": rows[k]["epoch"],
                    "text": f"dev error rose from epoch {rows[k]['epoch']} ({dev[k]:.4g} → {dev[-1]:.4g}) while the "
                            "training loss kept falling: overfitting from there; early stopping would end it"})
    back = max(1, len(rows) // 4)
    if dev[-1] <= min(dev) + noise and dev[-1] < dev[-1 - back] - noise:
        out.append({"kind": "still_improving", "epoch": rows[-1]["epoch"],
                    "text": f"dev error still falling at the last epoch ({dev[-1 - back]:.4g} → {dev[-1]:.4g} over "
                            f"the last {back} epoch{'s' if back > 1 else ''}): training longer would help"})
    return out


# ----------------------------------------------------------------------------- learning curve over data size


def data_curve(config: dict[str, Any], data: Any, fractions: tuple[float, ...] = CURVE_FRACTIONS,
               device: str | None = None, on_point: Callable[[dict[str, Any]], Any] | None = None,
               stored: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Retrain `config` on growing shares of the training split of `data` (a DataSettings: same split
    seed, epochs and dev split); `stored`: the study's manifest (a table's preprocessing as recorded)."""
    from tunectl.data import make_splits, read_dataset  # torch: only when a curve is asked for
    from tunectl.train import check_device, fit

    check_device(device)  # an unknown or absent device: one line before any retraining
    ds, classes = read_dataset(data)  # --classes selected, as the study's split was
    cfg = from_dict(config)
    points = []
    for f in fractions:
        splits = make_splits(ds, data.ratios, data.split_seed, f, spec=data.spec, classes=classes, stored=stored)
        n = len(splits.x_train)
        # a mini-batch larger than the subset becomes the full batch, not an error
        hist = fit(cfg if cfg.batch_size <= n else cfg.replace(batch_size=0), splits, device=device)
        point = {"fraction": f, "n_train": n, "train_error": hist.train_error, "dev_error": hist.dev_error,
                 "best_epoch": hist.best_epoch, "epochs": hist.epochs_run, "seconds": hist.seconds}
        points.append(point)
        if on_point is not None:
            on_point(point)
    return points


def data_curve_verdict(points: list[dict[str, Any]], variance_threshold: float) -> tuple[str, str]:
    """Still falling from the second-largest size to the whole split (by more than a quarter of
    the variance threshold), or flat."""
    ok = [p for p in points if _finite(p.get("dev_error"))]
    if len(ok) < 2:
        return "flat", "the data curve has too few finite points to say"
    a, b = ok[-2], ok[-1]
    span = f"{a['fraction']:.0%} → {b['fraction']:.0%} of the training split ({a['n_train']} → {b['n_train']} examples)"
    if a["dev_error"] - b["dev_error"] > variance_threshold / 4:
        return "more_data_helps", (f"dev error still falling from {span}: {a['dev_error']:.4g} → {b['dev_error']:.4g}; "
                                   "more data would help")
    return "flat", (f"dev error flat from {span}: {a['dev_error']:.4g} → {b['dev_error']:.4g}; more of the same "
                    "data would not help much")


# ----------------------------------------------------------------------------- where the numbers come from


def check_out_file(path: Path | str, flag: str, example: str) -> None:
    """An output file the command will write: refused (bad input, before any work) when it names a
    folder, or a place under a regular file, where the write could only fail at the end."""
    path = Path(path)
    if path.is_dir():
        raise TunectlError(f"{flag} {path}: is a folder; give a file name, e.g. {flag} {path / example}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TunectlError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
            break


def check_next_space(path: Path | str) -> None:
    """--next-space: checked before the diagnosis (and a --data-curve's retraining) runs."""
    check_out_file(path, "--next-space", "next.yaml")


def _number_or_null(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def read_run(folder: Path | str) -> dict[str, Any]:
    """A `tunectl train` run folder -> the subject of a diagnosis."""
    folder = Path(folder)
    path = folder / "history.json"
    rerun = "rerun `tunectl train` into a new --out folder"
    try:
        hist = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TunectlError(f"{folder}: no history.json, so not a `tunectl train` run folder; give a run folder "
                           f"or a study name") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise TunectlError(f"{path} is not valid JSON; {rerun}") from None
    except OSError as e:
        raise TunectlError(f"{path}: cannot read it ({e.strerror or e}); check the run folder") from None
    if not isinstance(hist, dict):
        raise TunectlError(f"{path}: expected a JSON object (a `tunectl train` history), got a "
                           f"{type(hist).__name__}; {rerun}")
    expect = {"train_error": (_number_or_null, "a number"), "dev_error": (_number_or_null, "a number"),
              "history": (lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v), "a list of epochs"),
              "config": (lambda v: isinstance(v, dict), "a mapping"),
              "data": (lambda v: v is None or isinstance(v, dict), "a mapping"),
              "task": (lambda v: v is None or v in ("binary", "multiclass", "regression"), "a task name")}
    for key, (ok, what) in expect.items():
        if key not in hist and key in ("train_error", "dev_error", "config"):
            raise TunectlError(f"{path}: no '{key}'; not a `tunectl train` history, {rerun}")
        if key in hist and not ok(hist[key]):
            raise TunectlError(f"{path}: '{key}' should be {what}, got {short(hist[key], 60)}; {rerun}")
    for row in hist.get("history") or []:
        for k in ("epoch", "train_error", "running_error", "dev_error", "train_loss"):
            if k in row and not _number_or_null(row[k]):
                raise TunectlError(f"{path}: history: '{k}' should be a number, got {short(row[k], 60)}; {rerun}")
    try:
        from_dict(hist["config"])
    except TunectlError as e:
        raise TunectlError(f"{path}: config: {e}; {rerun}") from None
    try:
        manifest = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        manifest = {}
    manifest = manifest if isinstance(manifest, dict) else {}
    scaling = manifest.get("scaling") if isinstance(manifest.get("scaling"), dict) else {}
    y_scale = scaling.get("y_scale") if _finite(scaling.get("y_scale")) else None
    task = hist.get("task") or manifest.get("task")
    task = task if task in ("binary", "multiclass", "regression") else "multiclass"
    sizes = manifest.get("sizes") if isinstance(manifest.get("sizes"), dict) else {}
    ses = {}
    for key, split in (("dev_error_se", "dev"), ("train_error_se", "train")):
        v = hist.get(key)
        ses[key] = v if _finite(v) else noise.standard_error(task, hist.get(key.removesuffix("_se")),
                                                             sizes.get(split) if isinstance(sizes.get(split), int) else None)
    return {"source": {"run": str(folder)}, "task": task, **ses,
            "n_dev": sizes.get("dev") if isinstance(sizes.get("dev"), int) else None,
            "train_error": hist.get("train_error"), "dev_error": hist.get("dev_error"),
            "curve": hist.get("history") or [], "config": hist.get("config") or {}, "data": hist.get("data") or {},
            "y_scale": y_scale, "space": None, "status": hist.get("status"), "manifest": manifest}


def trial_subject(record: dict[str, Any], meta: dict[str, Any], study: str) -> dict[str, Any]:
    """A trial record (tune.trial_record) and the study's tunectl attrs -> the subject of a diagnosis."""
    if record.get("train_error") is None or record.get("dev_error") is None:
        raise TunectlError(f"trial {record['number']} of study '{study}' has no train/dev error ({record['state']}: "
                           f"{record.get('reason')}); pick a complete trial (see `tunectl show {study}`)")
    manifest = meta.get("manifest", {})
    return {"source": {"study": study, "trial": record["number"], "state": record["state"],
                       "reason": record.get("reason")},
            "task": manifest.get("task", "multiclass"), "train_error": record["train_error"],
            "dev_error_se": record.get("dev_error_se"), "train_error_se": record.get("train_error_se"),
            "n_dev": (manifest.get("sizes") or {}).get("dev"),
            "dev_error": record["dev_error"], "curve": record.get("curve") or [], "config": record.get("config") or {},
            "data": meta.get("data", {}), "y_scale": manifest.get("scaling", {}).get("y_scale"),
            "space": meta.get("space"), "status": record.get("reason"), "manifest": manifest}


def diagnose_subject(s: dict[str, Any], human_error: float | None = None, thresholds: Thresholds = Thresholds(),
                     data_curve: list[dict[str, Any]] | None = None) -> Diagnosis:
    d = diagnose(s["train_error"], s["dev_error"], human_error or 0.0, s["task"], s["curve"], s.get("y_scale"),
                 thresholds, config=s["config"], space=s.get("space"),
                 image=is_image_data(s.get("data", {}).get("dataset")) and not s.get("data", {}).get("as_sequence"),
                 data_curve=data_curve,
                 dev_error_se=s.get("dev_error_se"), train_error_se=s.get("train_error_se"), n_dev=s.get("n_dev"))
    d.source = dict(s["source"])
    if d.source.get("state") == "PRUNED":
        d.evidence.insert(0, {"kind": "pruned", "text": f"this trial was {d.source.get('reason') or 'pruned'}: its "
                              "numbers are those of a model stopped early, not of one trained to the end"})
    if s["task"] == "regression" and human_error is None:
        d.evidence.append({"kind": "no_human_error", "text": "no --human-error: the avoidable bias counts all of the "
                           "train RMSE, noise included; give the error an expert would make, in the target's units"})
    return d


def study_verdicts(records: list[dict[str, Any]], meta: dict[str, Any], human_error: float = 0.0,
                   thresholds: Thresholds = Thresholds()) -> dict[int, str]:
    """Trial number -> verdict, for the trials that have both errors (a leaderboard's column)."""
    manifest = meta.get("manifest", {})
    task, spread = manifest.get("task", "multiclass"), manifest.get("scaling", {}).get("y_scale")
    human_error = check_human_error(human_error, task)
    tb, tv = thresholds.absolute(task, spread)
    out = {}
    for r in records:
        if _finite(r.get("train_error")) and _finite(r.get("dev_error")):
            out[r["number"]] = verdict(r["train_error"] - human_error, r["dev_error"] - r["train_error"], tb, tv,
                                       noise.diff_se(r.get("dev_error_se"), r.get("train_error_se")))
    return out


def study_overview(records: list[dict[str, Any]], meta: dict[str, Any], study: str, human_error: float = 0.0,
                   thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """`diagnose STUDY --all`: how many complete trials are bias- or variance-limited."""
    check_human_error(human_error, meta.get("manifest", {}).get("task", "multiclass"))
    complete = sorted((r for r in records if r["state"] == "COMPLETE"), key=lambda r: math.inf if r["dev_error"] is None else r["dev_error"])
    verdicts = study_verdicts(complete, meta, human_error, thresholds)
    counts = {v: sum(x == v for x in verdicts.values()) for v in VERDICTS}
    manifest = meta.get("manifest", {})
    tb, tv = thresholds.absolute(manifest.get("task", "multiclass"), manifest.get("scaling", {}).get("y_scale"))
    trials = [{"number": r["number"], "train_error": r["train_error"], "dev_error": r["dev_error"],
               "avoidable_bias": r["train_error"] - human_error, "variance": r["dev_error"] - r["train_error"],
               "diagnosis": verdicts[r["number"]]} for r in complete if r["number"] in verdicts]
    return clean({"study": study, "n_complete": len(verdicts), "human_error": human_error,
                   "thresholds": {"bias": tb, "variance": tv}, "counts": counts,
                   "bias_limited": counts["high_bias"] + counts["high_bias_high_variance"],
                   "variance_limited": counts["high_variance"] + counts["high_bias_high_variance"],
                   "trials": trials})


def diagnose_target(target: str, trial: int | None = None, human_error: float | None = None,
                    thresholds: Thresholds = Thresholds(), data_curve_: bool = False, next_space: Path | None = None,
                    all_trials: bool = False, storage: str | None = None, root: Path | str = "studies",
                    device: str | None = None, on_curve: Callable[[dict[str, Any] | None], Any] | None = None
                    ) -> dict[str, Any]:
    """`tunectl diagnose`: a run folder or a study's trial (the best, or --trial N) -> the diagnosis
    as plain data; with all_trials, the study's overview (`"overview": True`). Everything is
    checked before any work: a --data-curve retrains for minutes. `on_curve(None)` announces the
    data curve, then `on_curve(point)` reports each of its points."""
    from tunectl import results, studies
    from tunectl.advice import next_space as make_next_space

    if next_space is not None:
        check_next_space(next_space)
    thresholds.absolute("multiclass", None)  # a negative threshold is refused before any work
    if all_trials and (data_curve_ or next_space or trial is not None):
        raise TunectlError("--all summarises every complete trial; --trial, --data-curve and --next-space take one trial")
    folder, name, root = Path(target), target, Path(root)
    if (folder / "study.db").is_file() and storage is None:  # `diagnose studies/NAME` works too
        name, root = folder.name, folder.parent
    if (folder / "history.json").is_file():
        if all_trials:
            raise TunectlError(f"{target}: --all needs a study, and this is a run folder")
        subject = read_run(folder)
    elif storage is None and not (studies.study_dir(name, root) / "study.db").is_file():
        raise TunectlError(f"'{target}' is neither a run folder (with history.json) nor a study under {root}/; "
                           f"list the studies with `tunectl studies --root {root}`")
    else:
        st = results.open_study(name, storage, root)
        meta = st.user_attrs.get(results.ATTR) or {}
        records = results.trial_records(st, studies.study_dir(name, Path(root)))
        if all_trials:
            return {"overview": True, **study_overview(records, meta, name, human_error or 0.0, thresholds)}
        subject = trial_subject(results.pick_trial(records, name, trial), meta, name)
    check_human_error(human_error, subject.get("task"))  # refused before minutes of retraining
    points = None
    if data_curve_:
        from tunectl.data import DataSettings

        if on_curve is not None:
            on_curve(None)
        points = data_curve(subject["config"], DataSettings.from_dict(subject["data"]), device=device,
                            on_point=on_curve, stored=subject.get("manifest"))
    diag = diagnose_subject(subject, human_error, thresholds, points)
    out = diag.to_dict()
    if next_space is not None:
        from tunectl.space import dump_space

        sp, comments = make_next_space(diag, subject["config"], subject["space"], subject["data"].get("dataset"))
        if subject["source"].get("study"):  # the next study need not start cold: this one's best trials go first
            study = subject["source"]["study"]
            comments.append(f"warm-start the next study from this one: tunectl tune --space {next_space} "
                            f"--study NEW_NAME --warm-from {study}")
        next_space.parent.mkdir(parents=True, exist_ok=True)
        files.write_text(next_space, dump_space(sp, comments))
        out["next_space"] = str(next_space)
    return out


def board(study: str, storage: str | None = None, root: Path | str = "studies", top: int = 10) -> dict[str, Any]:
    """`tunectl show`: the study's summary (leaderboard of `top`), its parameter importances, and
    the bias/variance verdict of each trial on the leaderboard."""
    from tunectl import results, studies

    st = results.open_study(study, storage, root)
    summary = results.summarize(st, storage or studies.default_storage_url(study, Path(root)), top=top,
                                folder=studies.study_dir(study, Path(root)))
    summary["importances"] = results.importances(st)
    summary["importance_method"] = results.importance_method()
    summary["verdicts"] = study_verdicts(summary["leaderboard"], st.user_attrs.get(results.ATTR) or {})
    return summary
