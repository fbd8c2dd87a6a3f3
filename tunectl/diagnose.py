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

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunectl.config import TrainConfig, from_dict, short
from tunectl.errors import TunectlError
from tunectl.space import RESERVED, Space, parse_space

VERDICTS = ("high_bias", "high_variance", "high_bias_high_variance", "ok")
# Error rates: absolute points (0.02 = 2 %). With human error ~0 the textbook table comes out
# as taught: train/dev 1/11 % high variance, 15/16 % high bias, 15/30 % both, 0.5/1 % fine.
CLASSIFICATION_THRESHOLD = 0.02
# Regression errors are RMSE in the target's units; predicting the mean scores about one standard
# deviation of the targets, so thresholds there are a fraction of that spread.
REGRESSION_THRESHOLD = 0.10
NOISE = 0.1  # curve changes smaller than this share of the variance threshold are noise
FLAT_LOSS = 0.02  # training loss that never fell 2 % below its first epoch is 'flat'
CURVE_FRACTIONS = (0.10, 0.25, 0.50, 1.00)
IMAGE_DATA = ("digits", "mnist", "fashion_mnist", "cifar10")


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
    source: dict[str, Any] = field(default_factory=dict)  # study and trial, or run folder

    def to_dict(self) -> dict[str, Any]:
        d = {k: _clean(v) for k, v in asdict(self).items()}
        if self.data_curve is None:  # the key is there only when a data curve was asked for
            d.pop("data_curve")
            d.pop("data_verdict")
        return d


def _clean(v: Any) -> Any:
    """Drop NaN (JSON has none); numbers keep full precision (tables round them for reading)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


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


def verdict(avoidable_bias: float, variance: float, bias_threshold: float, variance_threshold: float) -> str:
    bias_high, var_high = avoidable_bias > bias_threshold, variance > variance_threshold
    if bias_high and var_high:
        return "high_bias_high_variance"
    return "high_bias" if bias_high else "high_variance" if var_high else "ok"


def diagnose(train_error: float, dev_error: float, human_error: float = 0.0, task: str = "multiclass",
             curve: list[dict[str, Any]] | None = None, target_spread: float | None = None,
             thresholds: Thresholds = Thresholds(), *, config: dict[str, Any] | None = None,
             space: dict[str, Any] | None = None, image: bool = False,
             data_curve: list[dict[str, Any]] | None = None) -> Diagnosis:
    """The four numbers, the verdict, the curves' evidence, and actions in `config`'s terms."""
    human_error = check_human_error(human_error, task)
    for name, v in (("train error", train_error), ("dev error", dev_error)):
        if v is None or not math.isfinite(v):
            raise TunectlError(f"{name} is {v}: the model has no finite error (it diverged?); diagnose another trial")
    tb, tv = thresholds.absolute(task, target_spread)
    bias, var = train_error - human_error, dev_error - train_error
    d = Diagnosis(train_error, dev_error, human_error, bias, var, verdict(bias, var, tb, tv), task,
                  {"bias": tb, "variance": tv, "unit": "target units" if task == "regression" else "error rate"})
    d.curve = [{"epoch": r.get("epoch"), "train_error": r.get("train_error"), "dev_error": r.get("dev_error"),
                "train_loss": r.get("train_loss")} for r in curve or []]
    d.evidence = curve_evidence(curve or [], tv * NOISE)
    if data_curve:
        d.data_curve = data_curve
        d.data_verdict, text = data_curve_verdict(data_curve, tv)
        d.evidence.append({"kind": d.data_verdict, "text": text})
    d.actions = recommend(d, from_dict(config or {}).to_dict(), space, image)
    return d


# ----------------------------------------------------------------------------- evidence from the curves


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def curve_evidence(curve: list[dict[str, Any]], noise: float) -> list[dict[str, Any]]:
    """What the per-epoch curves say: diverged, flat loss, overfitting from epoch k, still improving."""
    out: list[dict[str, Any]] = []
    bad = next((r for r in curve if not (_finite(r.get("train_loss")) and _finite(r.get("dev_error")))), None)
    if bad is not None:
        out.append({"kind": "diverged", "epoch": bad.get("epoch"),
                    "text": f"the loss became NaN/inf at epoch {bad.get('epoch')}: lr too high (or inputs unscaled)"})
    rows = [r for r in curve if _finite(r.get("train_loss")) and _finite(r.get("dev_error"))]
    if len(rows) < 2:
        return out
    losses, dev = [r["train_loss"] for r in rows], [r["dev_error"] for r in rows]
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


def data_curve(config: dict[str, Any], spec: Any, ratios: Any = None, split_seed: int = 0,
               fractions: tuple[float, ...] = CURVE_FRACTIONS, device: str | None = None,
               on_point: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Retrain `config` on growing shares of the training split (same seed, epochs and dev split)."""
    from tunectl.data import load_dataset, make_splits  # torch: only when a curve is asked for
    from tunectl.train import check_device, fit

    check_device(device)  # an unknown or absent device: one line before any retraining
    ds = load_dataset(spec)
    cfg = from_dict(config)
    points = []
    for f in fractions:
        splits = make_splits(ds, ratios, split_seed, f, spec=spec)
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


# ----------------------------------------------------------------------------- actions


def _v(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _spec_text(s: dict[str, Any] | None) -> str:
    if not s:
        return "-"
    if s["type"] == "categorical":
        return "{" + ", ".join(map(str, s["choices"])) + "}"
    return f"{_v(s['low'])}–{_v(s['high'])}" + (" log" if s.get("log") else "")


def _float(low: float, high: float, log: bool = False, cap: float = 0.9) -> dict[str, Any]:
    high = float(f"{min(high, cap):.3g}")  # 3 digits: the file is for reading, and no search needs more
    # a range narrower than a decade (log) or 0.05 is too narrow to be worth a search: widen it downwards
    low = float(f"{min(low, high / 10) if log else max(0.0, min(low, high - 0.05)):.3g}")
    return {"type": "float", "low": low, "high": high, **({"log": True} if log else {})}


def _int(low: int, high: int, log: bool = False) -> dict[str, Any]:
    return {"type": "int", "low": int(low), "high": int(max(high, low + 1)), **({"log": True} if log else {})}


def _act(kind: str, text: str, param: str | None = None, now: Any = None, change: dict | None = None) -> dict[str, Any]:
    return {"kind": kind, "param": param, "now": now, "text": text, "change": change}


def _where(space: dict[str, Any] | None, name: str) -> str:
    s = (space or {}).get("params", {}).get(name)
    return f" (searched {_spec_text(s)})" if s else ""


def _bias_actions(c: dict[str, Any], space: dict[str, Any] | None, image: bool, kinds: set[str]) -> list[dict]:
    acts = []
    w, depth = c["width"], c["depth"]
    acts.append(_act("bigger_network", f"a bigger network: width {w} → try {2 * w}–{8 * w}{_where(space, 'width')}",
                     "width", w, {"param": "width", "spec": _int(w, min(8 * w, 4096), log=True)}))
    acts.append(_act("bigger_network", f"a deeper network: depth {depth} → try {max(depth + 1, 1)}–{depth + 2}"
                     f"{_where(space, 'depth')}", "depth", depth,
                     {"param": "depth", "spec": _int(max(depth, 1), depth + 2)}))
    if c["model"] == "cnn":
        f = c["filters"]
        acts.append(_act("bigger_network", f"more filters: filters {f} → try {2 * f}–{4 * f}{_where(space, 'filters')}",
                         "filters", f, {"param": "filters", "spec": _int(f, 4 * f, log=True)}))
    epochs = (space or {}).get("epochs", c["epochs"])
    why = "dev error was still falling at the last epoch" if "still_improving" in kinds else \
        "a bigger network needs more steps"
    acts.append(_act("train_longer", f"train longer: epochs {epochs} → {2 * epochs} ({why})", "epochs", epochs,
                     {"epochs": 2 * epochs}))
    if image and c["model"] == "mlp":
        acts.append(_act("architecture", "another architecture: a ConvNet for image data (model mlp → cnn; "
                         "see searchspaces/cnn.yaml)", "model", "mlp", {"model": "cnn"}))
    if c["dropout"] > 0.01:
        p = c["dropout"]
        acts.append(_act("less_regularization", f"less regularization: dropout {_v(p)} → try 0–{_v(p / 2)}"
                         f"{_where(space, 'dropout')}", "dropout", p, {"param": "dropout", "spec": _float(0.0, p)}))
    if c["weight_decay"] > 0:
        wd = c["weight_decay"]
        acts.append(_act("less_regularization", f"less regularization: weight_decay {_v(wd)} → try "
                         f"{_v(wd / 100)}–{_v(wd / 10)}{_where(space, 'weight_decay')}", "weight_decay", wd,
                         {"param": "weight_decay", "spec": _float(wd / 100, wd, log=True)}))
    if c["augment"] != "none":
        acts.append(_act("less_regularization", f"less regularization: augment {c['augment']} → none",
                         "augment", c["augment"], {"fixed": {"augment": "none"}}))
    return acts


def _variance_actions(c: dict[str, Any], space: dict[str, Any] | None, image: bool, kinds: set[str],
                      data_verdict: str | None, overfit_epoch: int | None) -> list[dict]:
    acts = []
    if data_verdict == "more_data_helps":
        acts.append(_act("more_data", "more data: the data curve's dev error is still falling at 100 % of the "
                         "training split" + (" (or augment the images)" if image else "")))
    elif data_verdict is None:
        acts.append(_act("more_data", "more data may help: run again with --data-curve to see whether dev error "
                         "is still falling with the size of the training split"))
    p = c["dropout"]
    acts.append(_act("regularization", f"regularization: dropout {_v(p)} → try {_v(max(p, 0.1))}–"
                     f"{_v(min(0.8, max(p + 0.3, 0.5)))}{_where(space, 'dropout')}", "dropout", p,
                     {"param": "dropout", "spec": _float(max(p, 0.1), max(p + 0.3, 0.5), cap=0.8)}))
    wd = c["weight_decay"]
    low, high = (1e-5, 1e-2) if wd == 0 else (wd, min(0.1, wd * 100))
    acts.append(_act("regularization", f"regularization: weight_decay {_v(wd)} → try {_v(low)}–{_v(high)} (log)"
                     f"{_where(space, 'weight_decay')}", "weight_decay", wd,
                     {"param": "weight_decay", "spec": _float(low, high, log=True, cap=0.1)}))
    if image and c["augment"] != "strong":
        choices = ["light", "strong"]
        acts.append(_act("regularization", f"augmentation: augment {c['augment']} → try {', '.join(choices)}",
                         "augment", c["augment"], {"param": "augment", "spec": {"type": "categorical", "choices": choices}}))
    if overfit_epoch is not None and not c["patience"]:
        pat = max(2, (space or {}).get("epochs", c["epochs"]) // 10)
        acts.append(_act("early_stopping", f"early stopping: patience 0 → {pat} (dev error rose after epoch "
                         f"{overfit_epoch})", "patience", 0, {"fixed": {"patience": pat}}))
    if image and c["model"] == "mlp":
        acts.append(_act("architecture", "another architecture: a ConvNet shares weights across the image and "
                         "overfits less (model mlp → cnn)", "model", "mlp", {"model": "cnn"}))
    return acts


def recommend(d: Diagnosis, c: dict[str, Any], space: dict[str, Any] | None, image: bool) -> list[dict[str, Any]]:
    """The practitioner's recipe, in this study's parameters; for both problems, bias first."""
    kinds = {e["kind"] for e in d.evidence}
    acts: list[dict[str, Any]] = []
    lr = c["lr"]
    if "diverged" in kinds:
        acts.append(_act("learning_rate", f"lower the learning rate: lr {_v(lr)} → try {_v(lr / 1000)}–{_v(lr / 3)}",
                         "lr", lr, {"param": "lr", "spec": _float(lr / 1000, lr / 3, log=True, cap=1.0)}))
    elif "flat_loss" in kinds:
        acts.append(_act("learning_rate", f"search the learning rate widely: lr {_v(lr)} → try {_v(lr / 100)}–"
                         f"{_v(min(1.0, lr * 100))} (log); with activation {c['activation']} the initialization is "
                         f"{'He' if c['activation'] in ('relu', 'leaky_relu') else 'Xavier'}, so check the inputs' "
                         "scale too",
                         "lr", lr, {"param": "lr", "spec": _float(lr / 100, lr * 100, log=True, cap=1.0)}))
    overfit = next((e["epoch"] for e in d.evidence if e["kind"] == "overfitting"), None)
    if d.diagnosis in ("high_bias", "high_bias_high_variance"):
        acts += _bias_actions(c, space, image, kinds)
    if d.diagnosis in ("high_variance", "high_bias_high_variance"):
        then = _variance_actions(c, space, image, kinds, d.data_verdict, overfit)
        if d.diagnosis == "high_bias_high_variance":
            then = [a for a in then if a["kind"] != "architecture"]  # already named among the bias actions
            # bias first: a bigger network and less regularization come before more regularization
            for a in then:
                a.update(text=f"then, once bias is down: {a['text']}", deferred=True)
        acts += then
    if d.diagnosis == "ok":
        acts.append(_act("none", "nothing pressing: bias and variance are both under their thresholds; look at the "
                         "test set once (`tunectl evaluate`) or lower the thresholds to push further"))
    return acts


# ----------------------------------------------------------------------------- the next search space


def _space_around(c: dict[str, Any], dataset: str | None) -> dict[str, Any]:
    """A run folder has no space: search lr around its value and hold the rest of its config fixed."""
    defaults = TrainConfig().to_dict()
    fixed = {k: v for k, v in c.items() if k not in RESERVED and k not in ("model", "lr") and v != defaults[k]}
    doc: dict[str, Any] = {"model": c["model"], "epochs": c["epochs"],
                           "params": {"lr": _float(c["lr"] / 10, c["lr"] * 10, log=True, cap=1.0)}, "fixed": fixed}
    if dataset:
        doc["dataset"] = dataset
    return doc


def next_space(d: Diagnosis, config: dict[str, Any], space: dict[str, Any] | None,
               dataset: str | None = None) -> tuple[Space, list[str]]:
    """The study's space (or one around a run's config) with the actions applied; comments say why."""
    c = from_dict(config or {}).to_dict()
    doc = copy.deepcopy(space) if space else _space_around(c, dataset)
    doc.setdefault("params", {})
    doc["fixed"] = dict(doc.get("fixed") or {})
    params, fixed = doc["params"], doc["fixed"]
    src = d.source
    origin = f"study {src['study']}, trial {src['trial']}" if src.get("study") else f"run {src.get('run', '?')}"
    comments = [f"next search space from `tunectl diagnose` of {origin}: {d.diagnosis}",
                f"(train {d.train_error:.4g}, dev {d.dev_error:.4g}, human {d.human_error:.4g}; "
                f"avoidable bias {d.avoidable_bias:.4g}, variance {d.variance:.4g})"]
    if not space:
        comments.append(f"a run has no search space: lr searched around {_v(c['lr'])}, the rest of its config fixed")
    changed: set[str] = set()
    for a in d.actions:
        ch = a.get("change")
        if not ch or a.get("deferred"):
            continue
        why = a["kind"].replace("_", " ")
        if "epochs" in ch:
            comments.append(f"epochs: {doc.get('epochs', c['epochs'])} → {ch['epochs']}: {why}")
            doc["epochs"] = ch["epochs"]
        elif "param" in ch:
            name, spec = ch["param"], dict(ch["spec"])
            old = params.get(name)
            if old and "when" in old:
                spec["when"] = old["when"]
            before = _spec_text(old) if old else \
                f"{fixed.pop(name)} (fixed)" if name in fixed else f"{_v(a['now'])} (not searched)"
            params[name] = spec
            changed.add(name)
            comments.append(f"{name}: {before} → {_spec_text(spec)}: {why}")
        elif "fixed" in ch:
            for name, value in ch["fixed"].items():
                before = _spec_text(params.pop(name)) if name in params else _v(fixed.get(name, c[name]))
                fixed[name] = value
                changed.add(name)
                comments.append(f"{name}: {before} → {value} (fixed): {why}")
        elif "model" in ch and "model" not in params:
            fixed.pop("model", None)
            params["model"] = {"type": "categorical", "choices": [doc.get("model") or c["model"], "cnn"]}
            params.setdefault("conv_layers", {"type": "int", "low": 1, "high": 3, "when": {"model": ["cnn"]}})
            params.setdefault("filters", {"type": "int", "low": 8, "high": 64, "log": True, "when": {"model": ["cnn"]}})
            changed.add("model")
            comments.append(f"model: {doc.get('model') or c['model']} → searched with cnn (conv_layers 1–3, filters "
                            f"8–64 when cnn): another architecture")
    lr = params.get("lr")
    if lr and lr.get("log") and "lr" not in changed and space:
        # coarse to fine: the first search found the region; the next one samples it densely
        zoom = _float(max(c["lr"] / 10, lr["low"]), c["lr"] * 10, log=True, cap=lr["high"])
        comments.append(f"lr: {_spec_text(lr)} → {_spec_text(zoom)}: coarse to fine, around the best {_v(c['lr'])}")
        params["lr"] = {**zoom, **({"when": lr["when"]} if "when" in lr else {})}
    return parse_space(doc, "<next space>"), comments


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


def is_image_data(name: str | None) -> bool:
    return bool(name) and (name in IMAGE_DATA or str(name).startswith("folder:"))


def _number_or_null(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def read_run(folder: Path | str) -> dict[str, Any]:
    """A `tunectl train` run folder -> the subject of a diagnosis."""
    folder = Path(folder)
    path = folder / "history.json"
    rerun = f"rerun `tunectl train` into a new --out folder"
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
        for k in ("epoch", "train_error", "dev_error", "train_loss"):
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
    return {"source": {"run": str(folder)}, "task": task if task in ("binary", "multiclass", "regression") else "multiclass",
            "train_error": hist.get("train_error"), "dev_error": hist.get("dev_error"),
            "curve": hist.get("history") or [], "config": hist.get("config") or {}, "data": hist.get("data") or {},
            "y_scale": y_scale, "space": None, "status": hist.get("status")}


def trial_subject(record: dict[str, Any], meta: dict[str, Any], study: str) -> dict[str, Any]:
    """A trial record (tune.trial_record) and the study's tunectl attrs -> the subject of a diagnosis."""
    if record.get("train_error") is None or record.get("dev_error") is None:
        raise TunectlError(f"trial {record['number']} of study '{study}' has no train/dev error ({record['state']}: "
                           f"{record.get('reason')}); pick a complete trial (see `tunectl show {study}`)")
    manifest = meta.get("manifest", {})
    return {"source": {"study": study, "trial": record["number"], "state": record["state"],
                       "reason": record.get("reason")},
            "task": manifest.get("task", "multiclass"), "train_error": record["train_error"],
            "dev_error": record["dev_error"], "curve": record.get("curve") or [], "config": record.get("config") or {},
            "data": meta.get("data", {}), "y_scale": manifest.get("scaling", {}).get("y_scale"),
            "space": meta.get("space"), "status": record.get("reason")}


def diagnose_subject(s: dict[str, Any], human_error: float | None = None, thresholds: Thresholds = Thresholds(),
                     data_curve: list[dict[str, Any]] | None = None) -> Diagnosis:
    d = diagnose(s["train_error"], s["dev_error"], human_error or 0.0, s["task"], s["curve"], s.get("y_scale"),
                 thresholds, config=s["config"], space=s.get("space"),
                 image=is_image_data(s.get("data", {}).get("dataset")), data_curve=data_curve)
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
            out[r["number"]] = verdict(r["train_error"] - human_error, r["dev_error"] - r["train_error"], tb, tv)
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
    return _clean({"study": study, "n_complete": len(verdicts), "human_error": human_error,
                   "thresholds": {"bias": tb, "variance": tv}, "counts": counts,
                   "bias_limited": counts["high_bias"] + counts["high_bias_high_variance"],
                   "variance_limited": counts["high_variance"] + counts["high_bias_high_variance"],
                   "trials": trials})
