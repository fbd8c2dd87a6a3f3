"""Warm starts: the trials a study tries first (the textbook defaults, params files, another study's best).

A sampler's first trials are random draws (lr = 0.5, batch 16 with tanh) unless it is told what a
practitioner knows. Each source here becomes a list of `Start`s: Optuna parameter values (the
names and scales of `Space.distributions()`, `one_minus_` included), checked against the space,
and the reason recorded on the trial. `tune.prepare` hands them to Optuna's public
`study.enqueue_trial`, which runs them before the sampler's own choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution, IntDistribution

from tunectl.config import TrainConfig, short
from tunectl.errors import ConfigError, StudyError
from tunectl.space import Space, active, load_yaml

ENQUEUED = "enqueued"  # trial user attr: where a first trial came from (defaults, a file, a study's trial)
ENQUEUED_WHY = "enqueued_why"  # trial user attr: why, in a sentence (what was clipped into the space)
MIDDLE = ("width", "depth", "filters", "conv_layers")  # capacity: the space's middle, not a fixed number
MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class Start:
    params: dict[str, Any]  # Optuna names and values
    source: str  # "defaults", "file:PATH", "study:NAME#N"
    why: str

    @property
    def user_attrs(self) -> dict[str, str]:
        return {ENQUEUED: self.source, ENQUEUED_WHY: self.why}


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _on_grid(d: Any, value: float) -> float:
    if getattr(d, "step", None):
        value = d.low + round((value - d.low) / d.step) * d.step
        value = _clip(value, d.low, d.high)
    return int(round(value)) if isinstance(d, IntDistribution) else float(value)


def _middle(spec: dict[str, Any]) -> float:
    if spec.get("log"):
        return math.sqrt(spec["low"] * spec["high"])
    return (spec["low"] + spec["high"]) / 2


def _nearest_choice(choices: tuple, value: Any) -> Any:
    """The choice equal to `value`, or the nearest number (on a log scale for positive numbers)."""
    if value in choices:
        return value
    numbers = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
    if not numbers or not isinstance(value, (int, float)):
        return None
    def gap(c: float) -> float:
        return abs(math.log(c) - math.log(value)) if c > 0 and value > 0 else abs(c - value)
    return min(numbers, key=gap)


def _optuna_value(space: Space, name: str, value: Any) -> tuple[str, Any]:
    spec = space.params[name]
    return space.optuna_name(name), (1 - value if spec.get("one_minus") else value)


def _range_text(space: Space, name: str) -> str:
    s = space.params[name]
    if s["type"] == "categorical":
        return "one of " + ", ".join(map(str, s["choices"]))
    return f"{s['low']:g} to {s['high']:g}" + (" (log)" if s.get("log") else "") + \
        (f" in steps of {s['step']:g}" if s.get("step") else "")


def defaults(space: Space) -> Start | None:
    """The practitioner's defaults (TrainConfig's: Adam, lr 1e-3, β1 0.9, β2 0.999, ε 1e-8, batch 64, no
    dropout or weight decay; the space's middle for width and depth), clipped into the space.

    A name (an optimizer, an activation) that is not among the choices is left to the sampler; a number
    outside the range is clipped to its edge, and the reason says so. None when nothing could be set."""
    base = TrainConfig().to_dict()
    dists = space.distributions()
    values: dict[str, Any] = dict(space.fixed)
    out: dict[str, Any] = {}
    notes: list[str] = []
    for name, spec in space.params.items():
        if not active(spec, values):
            continue
        key = space.optuna_name(name)
        d = dists[key]
        want = _middle(spec) if (name in MIDDLE or name not in base) and spec["type"] != "categorical" else base.get(name)
        if isinstance(d, CategoricalDistribution):
            got = _nearest_choice(d.choices, want)
            if got is None:
                continue  # a name not offered (or your builder's own choice): the sampler chooses
            if got != want:
                notes.append(f"{name} {want} → {got}")
        else:
            raw = 1 - want if spec.get("one_minus") else want
            clipped = _on_grid(d, _clip(raw, d.low, d.high))
            got = 1 - clipped if spec.get("one_minus") else clipped
            if name not in MIDDLE and name in base and not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
                notes.append(f"{name} {want:g} → {got:g}")
        values[name] = got
        out[key] = _optuna_value(space, name, got)[1]
    if not out:
        return None
    middle = [n for n in space.params if n in values and (n in MIDDLE or n not in base)
              and space.params[n]["type"] != "categorical"]
    why = "textbook defaults tried first (TrainConfig's values" + \
          (f"; the space's middle for {', '.join(middle)}" if middle else "") + ")" + \
          (f"; clipped into the space: {', '.join(notes)}" if notes else "")
    return Start(out, "defaults", why)


def _read(path: Path) -> Any:
    where = f"--enqueue {path}"
    try:
        if path.is_dir():
            raise ConfigError(f"{where}: is a folder; give a params file (export's params.yaml or a YAML of values)")
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise ConfigError(f"{where}: too large for a params file (more than {MAX_BYTES} bytes); is it the right file?")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file; give export's params.yaml or a YAML of parameter values") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text; save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read it ({e.strerror or e}); check the path") from None
    return load_yaml(text, where, ConfigError)


def _check_value(space: Space, name: str, value: Any, where: str) -> Any:
    """A value for parameter `name` that must lie in the space, as given (no clipping)."""
    spec = space.params[name]
    bad = ConfigError(f"{where}: {name} = {short(value, 40)} is outside the space ({name}: "
                      f"{_range_text(space, name)}); change the value or widen the space")
    if spec["type"] == "categorical":
        if value not in spec["choices"] or (isinstance(value, bool) and True in spec["choices"] and
                                            not any(c is value for c in spec["choices"])):
            raise bad
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise bad from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad
    if spec["type"] == "int" and float(value) != int(value):
        raise bad
    if not spec["low"] <= value <= spec["high"]:
        raise bad
    if spec.get("step") and not math.isclose((value - spec["low"]) / spec["step"],
                                             round((value - spec["low"]) / spec["step"]), abs_tol=1e-9):
        raise bad
    return int(value) if spec["type"] == "int" else float(value)


def from_file(space: Space, path: Path | str) -> Start:
    """--enqueue FILE: export's params.yaml (every TrainConfig field, a data: section) or any YAML mapping
    of parameter values. The space's parameters are read from it (inactive ones skipped); a value
    outside the space is refused, naming the parameter and its range."""
    path = Path(path)
    where = f"--enqueue {path}"
    doc = _read(path)
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping of parameter: value, e.g. {{lr: 0.001, depth: 2}}")
    doc = {str(k): v for k, v in doc.items() if k != "data"}
    if isinstance(doc.get("model_params"), dict):  # your builder's own values, as export writes them
        doc = {**{str(k): v for k, v in doc.pop("model_params").items()}, **doc}
    values: dict[str, Any] = dict(space.fixed)
    out: dict[str, Any] = {}
    for name, spec in space.params.items():
        if not active(spec, values) or name not in doc:
            continue
        values[name] = _check_value(space, name, doc[name], where)
        key, v = _optuna_value(space, name, values[name])
        out[key] = v
    if not out:
        raise ConfigError(f"{where}: names none of the space's parameters ({', '.join(space.params)}); "
                          f"give values for some of them")
    missing = [n for n, s in space.params.items() if active(s, values) and n not in values]
    why = f"from {path}" + (f"; the sampler chooses {', '.join(missing)}" if missing else "")
    return Start(out, f"file:{path}", why)


def from_study(space: Space, name: str, records: list[dict[str, Any]], top: int) -> list[Start]:
    """--warm-from STUDY: its `top` best complete trials (records of results.trial_record), in the
    parameters this space shares with it; a value outside this space is clipped to its edge."""
    done = sorted((r for r in records if r["state"] == "COMPLETE" and r["value"] is not None),
                  key=lambda r: (r["value"], r["number"]))
    if not done:
        raise StudyError(f"--warm-from {name}: the study has no complete trial to start from; let it run, "
                         f"or drop --warm-from")
    dists = space.distributions()
    starts: list[Start] = []
    seen: list[dict[str, Any]] = []
    shared = False
    for r in done:
        if len(starts) >= top:
            break
        given = r.get("params") or {}
        values: dict[str, Any] = dict(space.fixed)
        out: dict[str, Any] = {}
        notes: list[str] = []
        for pname, spec in space.params.items():
            if not active(spec, values) or pname not in given:
                continue
            shared = True
            key = space.optuna_name(pname)
            d = dists[key]
            v = given[pname]
            if isinstance(d, CategoricalDistribution):
                if v not in d.choices:
                    notes.append(f"{pname} {v} is not a choice here: the sampler chooses")
                    continue
                values[pname], out[key] = v, v
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            raw = 1 - v if spec.get("one_minus") else v
            clipped = _on_grid(d, _clip(raw, d.low, d.high))
            got = 1 - clipped if spec.get("one_minus") else clipped
            if not math.isclose(got, v, rel_tol=1e-9, abs_tol=1e-12):
                notes.append(f"{pname} {v:g} → {got:g}")
            values[pname], out[key] = got, clipped
        if not out or out in seen:
            continue
        seen.append(out)
        why = f"trial {r['number']} of study {name} (dev error {r['value']:.4g}), tried first" + \
              (f"; clipped into this space: {', '.join(notes)}" if notes else "")
        starts.append(Start(out, f"study:{name}#{r['number']}", why))
    if not shared:
        raise StudyError(f"--warm-from {name}: its trials share no parameter with this space "
                         f"({', '.join(space.params)}); warm-start from a study of the same or an overlapping space")
    return starts
