"""Advice: the practitioner's recipe for a diagnosis, in this study's own hyperparameters, and the next search space.

High bias: a bigger network, train longer, another architecture; high variance: more data,
regularization, another architecture. Each action names the parameter it changes and how,
and `next_space` writes them into a search space that warm-starts from this one. Plain data
in and out: a Diagnosis (diagnose.py), a trial's config and its study's space as dicts.
"""

from __future__ import annotations

import copy
from typing import Any

from tunectl.builders import is_reference
from tunectl.config import TrainConfig, from_dict
from tunectl.space import RESERVED, Space, parse_space

IMAGE_DATA = ("digits", "mnist", "fashion_mnist", "cifar10")


def is_image_data(name: str | None) -> bool:
    return bool(name) and (name in IMAGE_DATA or str(name).startswith("folder:"))


def _v(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"  # as a space file and --set write it
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _spec_text(s: dict[str, Any] | None) -> str:
    if not s:
        return "-"
    if s["type"] == "categorical":
        return "{" + ", ".join(_v(c) if isinstance(c, bool) else str(c) for c in s["choices"]) + "}"
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


def _roles(c: dict[str, Any], space: dict[str, Any] | None, role: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """Your builder's parameters that the space marks `role: capacity` or `role: regularization`:
    (name, this trial's value, its spec)."""
    own = c.get("model_params") or {}
    return [(n, own.get(n), s) for n, s in ((space or {}).get("params") or {}).items()
            if s.get("role") == role and n in own]


def _wider(spec: dict[str, Any], now: Any, up: bool, cap: float = 0.9) -> dict[str, Any] | None:
    """The next range for a builder's parameter: above its value (up) or below it, on its own scale."""
    if spec["type"] == "categorical" or not isinstance(now, (int, float)) or isinstance(now, bool):
        return None
    if not up and now <= spec.get("low", 0):  # already at the bottom of its range: nothing lower to try
        return None
    if spec["type"] == "int":
        return _int(now, max(now + 1, 4 * now), log=now > 0) if up else _int(max(0, now // 4), now)
    return _float(now, max(now * 4, now + 0.3), cap=cap) if up else _float(0.0, now, cap=cap)


def _builder_actions(c: dict[str, Any], space: dict[str, Any] | None, role: str, kind: str, up: bool,
                     what: str) -> list[dict]:
    """Capacity and regularization in your builder's own parameters, where the space marks them."""
    acts, marked = [], _roles(c, space, role)
    for name, now, spec in marked:
        new = _wider(spec, now, up, cap=0.8 if role == "regularization" else 1e9)
        if new is None and not up and spec["type"] != "categorical" and isinstance(now, (int, float)):
            continue  # already at the bottom of its range (dropout 0): there is nothing to loosen
        to = f" → try {_spec_text(new)}" if new else ""
        acts.append(_act(kind, f"{what}: {name} {_v(now)}{to}{_where(space, name)}", name, now,
                         {"param": name, "spec": {**new, "role": role}} if new else None))
    if not marked:
        acts.append(_act(kind, f"{what}: in your builder {c['model'].rpartition('/')[2]} (mark its parameters "
                         f"`role: {role}` in the space and tunectl searches them)"))
    return acts


def _bias_actions(c: dict[str, Any], space: dict[str, Any] | None, image: bool, kinds: set[str]) -> list[dict]:
    if is_reference(c["model"]):
        return [*_builder_actions(c, space, "capacity", "bigger_network", True, "a bigger network"),
                _train_longer(c, space, kinds),
                *_builder_actions(c, space, "regularization", "less_regularization", False, "less regularization"),
                *[a for a in _core_less_regularization(c, space)]]
    if c["model"] == "rnn":
        return [*_recurrent_capacity(c, space), _train_longer(c, space, kinds), *_less_dropout(c, space),
                *_core_less_regularization(c, space)]
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
    acts.append(_train_longer(c, space, kinds))
    if image and c["model"] == "mlp":
        acts.append(_act("architecture", "another architecture: a ConvNet for image data (model mlp → cnn; "
                         "see searchspaces/cnn.yaml)", "model", "mlp", {"model": "cnn"}))
    return acts + _less_dropout(c, space) + _core_less_regularization(c, space)


def _less_dropout(c: dict[str, Any], space: dict[str, Any] | None) -> list[dict]:
    if c["dropout"] <= 0.01:
        return []
    p = c["dropout"]
    return [_act("less_regularization", f"less regularization: dropout {_v(p)} → try 0–{_v(p / 2)}"
                 f"{_where(space, 'dropout')}", "dropout", p, {"param": "dropout", "spec": _float(0.0, p)})]


def _recurrent_capacity(c: dict[str, Any], space: dict[str, Any] | None) -> list[dict]:
    """A bigger recurrent net: a larger state, more stacked layers, a gated cell, both directions."""
    h, depth = c["hidden"], c["depth"]
    acts = [_act("bigger_network", f"a bigger network: hidden {h} → try {2 * h}–{8 * h}{_where(space, 'hidden')}",
                 "hidden", h, {"param": "hidden", "spec": _int(h, min(8 * h, 4096), log=True)}),
            _act("bigger_network", f"more stacked layers: depth {depth} → try {max(depth, 1)}–{depth + 1}"
                 f"{_where(space, 'depth')}", "depth", depth, {"param": "depth", "spec": _int(max(depth, 1), depth + 1)})]
    if c["cell"] == "rnn":
        acts.append(_act("bigger_network", f"a gated cell: cell rnn → try gru, lstm (they carry information over "
                         f"many more steps){_where(space, 'cell')}", "cell", "rnn",
                         {"param": "cell", "spec": {"type": "categorical", "choices": ["gru", "lstm"]}}))
    searched = ((space or {}).get("params") or {}).get("bidirectional", {}).get("choices") or []
    if not c["bidirectional"] and True not in searched:
        acts.append(_act("bigger_network", f"read both ways: bidirectional false → try false, true"
                         f"{_where(space, 'bidirectional')}", "bidirectional", False,
                         {"param": "bidirectional", "spec": {"type": "categorical", "choices": [False, True]}}))
    return acts


def _train_longer(c: dict[str, Any], space: dict[str, Any] | None, kinds: set[str]) -> dict[str, Any]:
    epochs = (space or {}).get("epochs", c["epochs"])
    why = "dev error was still falling at the last epoch" if "still_improving" in kinds else \
        "a bigger network needs more steps"
    return _act("train_longer", f"train longer: epochs {epochs} → {2 * epochs} ({why})", "epochs", epochs,
                {"epochs": 2 * epochs})


def _core_less_regularization(c: dict[str, Any], space: dict[str, Any] | None) -> list[dict]:
    """Less of tunectl's own regularization (any model): weight decay and augmentation."""
    acts = []
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
    if is_reference(c["model"]):  # your builder's own regularization, where the space marks it
        acts += _builder_actions(c, space, "regularization", "regularization", True, "regularization")
    else:
        p = c["dropout"]
        where = " between the recurrent layers and before the head" if c["model"] == "rnn" else ""
        acts.append(_act("regularization", f"regularization{where}: dropout {_v(p)} → try {_v(max(p, 0.1))}–"
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


def recommend(d: Any, c: dict[str, Any], space: dict[str, Any] | None, image: bool) -> list[dict[str, Any]]:
    """The practitioner's recipe, in this study's parameters; for both problems, bias first."""
    kinds = {e["kind"] for e in d.evidence}
    acts: list[dict[str, Any]] = []
    lr = c["lr"]
    if "diverged" in kinds:
        acts.append(_act("learning_rate", f"lower the learning rate: lr {_v(lr)} → try {_v(lr / 1000)}–{_v(lr / 3)}",
                         "lr", lr, {"param": "lr", "spec": _float(lr / 1000, lr / 3, log=True, cap=1.0)}))
    elif "flat_loss" in kinds:
        acts.append(_act("learning_rate", f"search the learning rate widely: lr {_v(lr)} → try {_v(lr / 100)}–"
                         f"{_v(min(1.0, lr * 100))} (log); " + (
                             "your builder initialises its own weights: check that, and the inputs' scale"
                             if is_reference(c["model"]) else
                             f"with activation {c['activation']} the initialization is "
                             f"{'He' if c['activation'] in ('relu', 'leaky_relu') else 'Xavier'}, so check the "
                             "inputs' scale too"),
                         "lr", lr, {"param": "lr", "spec": _float(lr / 100, lr * 100, log=True, cap=1.0)}))
    if kinds & {"diverged", "loss_spike"} and not c.get("clip_norm"):
        rnn = " (recurrent nets most of all)" if c["model"] == "rnn" else ""
        acts.append(_act("clip_gradients", f"exploding gradients{rnn}: clip them, clip_norm 0 → try 0.5–5 (log)"
                         f"{_where(space, 'clip_norm')}", "clip_norm", 0.0,
                         {"param": "clip_norm", "spec": _float(0.5, 5.0, log=True, cap=5.0)}))
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


def next_space(d: Any, config: dict[str, Any], space: dict[str, Any] | None,
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
            for key in ("when", "role"):
                if old and key in old:
                    spec[key] = old[key]
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


