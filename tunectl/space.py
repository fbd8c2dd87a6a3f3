"""Search-space files -> Optuna distributions, and `suggest(trial, space)`.

A space file (see searchspaces/*.yaml, shipped with the package: `--space quick`) names TrainConfig fields under
`params` (searched) and `fixed` (held constant), plus the study's defaults (`model`,
`dataset`, `epochs`). Every mistake is a SpaceError naming the file, the key and the fix.

Two extensions of the DESIGN format:
- `when: {optimizer: [momentum, rmsprop]}` makes a parameter conditional;
- `one_minus: true` samples 1 - value on a log scale (Adam's beta2: 0.9, 0.99 and 0.999
  are then equally likely), stored in Optuna as `one_minus_<name>`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from tunectl.builders import is_reference, resolve
from tunectl.config import FIELD_TYPES, TrainConfig, check_size, closest_field, coerce, from_dict, short
from tunectl.errors import ConfigError, SpaceError

TOP_KEYS = ("model", "model_sha256", "dataset", "epochs", "params", "fixed")
ROLES = ("capacity", "regularization")  # what a builder's own parameter is to the bias/variance advice
SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when", "one_minus", "role"},
    "int": {"type", "low", "high", "log", "step", "when", "role"},
    "categorical": {"type", "choices", "when", "role"},
}
MAX_CHOICES = 1000  # categorical choices per parameter: a grid of thousands is not a search, and Optuna stores them all per trial
MAX_NODES = 100_000  # values in a space document, counted with YAML aliases expanded ('billion laughs')
MAX_BYTES = 1_000_000  # a space file is a page of YAML, not a data set
MAX_INT = 2**53  # Optuna stores parameters as floats: integers past 2**53 would not come back as written
RESERVED = {"epochs": "set `epochs:` at the top level: it is the study's budget per trial",
            "seed": "the seed is the study's (--seed); it is not searched",
            "fast_curves": "it is how the study measures its train curves, the same for every trial; "
                           "use `tune --fast-curves` (or fixed: fast_curves: true)"}


@dataclass(frozen=True)
class Space:
    params: dict[str, dict[str, Any]]  # normalized specs, in suggestion order
    fixed: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    dataset: str | None = None
    epochs: int = 20
    origin: str = "<space>"
    model_sha256: str | None = None  # your own builder (model: FILE.py:FUNCTION): its file's SHA-256
    builder_params: tuple[str, ...] = ()  # the names under params/fixed that go to your builder

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.model:
            d["model"] = self.model
        if self.model_sha256:
            d["model_sha256"] = self.model_sha256
        if self.dataset:
            d["dataset"] = self.dataset
        d["epochs"] = self.epochs
        d["params"] = self.params
        d["fixed"] = self.fixed
        return d

    def fingerprint(self) -> str:
        """A canonical text: two spaces are the same search iff their fingerprints are."""
        d = {k: v for k, v in self.to_dict().items() if k != "dataset"}
        if self.model_sha256:  # your builder is its file's content, wherever this machine keeps it
            d["model"] = self.model.rpartition(":")[2]
        return json.dumps(d, sort_keys=True)

    def optuna_name(self, name: str) -> str:
        return f"one_minus_{name}" if self.params[name].get("one_minus") else name

    def distributions(self) -> dict[str, BaseDistribution]:
        return {self.optuna_name(n): _distribution(s) for n, s in self.params.items()}


def _distribution(s: dict[str, Any]) -> BaseDistribution:
    if s["type"] == "categorical":
        return CategoricalDistribution(s["choices"])
    if s["type"] == "int":
        return IntDistribution(s["low"], s["high"], log=s.get("log", False), step=s.get("step", 1))
    if s.get("one_minus"):
        return FloatDistribution(1 - s["high"], 1 - s["low"], log=True)
    return FloatDistribution(s["low"], s["high"], log=s.get("log", False), step=s.get("step"))


def shipped_dir() -> Path:
    """The folder of the search spaces shipped with tunectl: tunectl/searchspaces/ in an installed
    copy (package data, see pyproject.toml), or the repository's searchspaces/ in a checkout
    (`pip install -e .`), where they are edited."""
    from importlib.resources import files

    installed = files("tunectl") / "searchspaces"
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parent.parent / "searchspaces"


def shipped_names() -> list[str]:
    return sorted(p.stem for p in shipped_dir().glob("*.yaml"))


def is_bare_name(text: str) -> bool:
    """`quick`, `mlp`: a name without a folder or a .yaml suffix, which may name a shipped space."""
    return bool(text) and "/" not in text and os.sep not in text and not text.lower().endswith((".yaml", ".yml"))


def find_space(space: Path | str) -> Path:
    """--space: a shipped space's name (`quick`, from any folder) or the path of a YAML file (as given).
    A bare name that is not shipped is still a path if that file or folder exists here; otherwise
    a SpaceError lists the shipped names."""
    text = str(space)
    if isinstance(space, Path) or not is_bare_name(text):
        return Path(space)
    shipped = shipped_dir() / f"{text}.yaml"
    if shipped.is_file():
        return shipped
    if Path(text).exists():
        return Path(text)
    raise SpaceError(f"--space {text}: no such shipped search space; use one of: {', '.join(shipped_names())}, "
                     f"or give the path of a YAML file (see `tunectl spaces`)")


def describe_shipped() -> list[dict[str, Any]]:
    """The shipped spaces: name, what they are for (their first comment line), model, data set, epochs."""
    out = []
    for name in shipped_names():
        path = shipped_dir() / f"{name}.yaml"
        text = path.read_text(encoding="utf-8")
        about = next((ln.lstrip("#").strip().rstrip(":") for ln in text.splitlines() if ln.startswith("#")), "")
        sp = load_space(path)
        out.append({"name": name, "about": about, "model": sp.model, "dataset": sp.dataset, "epochs": sp.epochs,
                    "params": list(sp.params), "path": str(path)})
    return out


def load_space(path: Path | str) -> Space:
    path = Path(path)
    try:
        with open(path, "rb") as f:  # a bounded read: /dev/zero or a huge file is refused, not swallowed
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise SpaceError(f"{path}: too large for a search-space file (more than {MAX_BYTES} bytes); "
                             f"is it the right file?")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SpaceError(f"{path}: no such search-space file; name a shipped space (see `tunectl spaces`) "
                         f"or give the path of a YAML file") from None
    except UnicodeDecodeError as e:
        raise SpaceError(f"{path}: cannot read the search-space file (not UTF-8: byte 0x{e.object[e.start]:02x} "
                         f"at offset {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise SpaceError(f"{path}: cannot read the search-space file ({e.strerror or type(e).__name__}); "
                         f"give the path of a YAML file") from None
    doc = load_yaml(text, str(path), SpaceError)
    if isinstance(doc, dict) and is_reference(doc.get("model")):  # your builder: relative to this file
        doc = {**doc, "model": resolve(doc["model"], path.parent)}
    return parse_space(doc, str(path))


def load_yaml(text: str, where: str, error: type[Exception] = SpaceError) -> Any:
    """yaml.safe_load, with every failure one line naming `where`, and a bound on what aliases expand to."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f": line {mark.line + 1}, column {mark.column + 1}" if mark else ""  # a ReaderError has no mark
        problem = getattr(e, "problem", None) or "syntax error"
        raise error(f"{where}{at}: YAML {_name(problem, limit=120)}; fix the syntax there") from None
    except (ValueError, RecursionError) as e:  # a number past Python's digit limit; nesting too deep
        raise error(f"{where}: cannot read it as YAML ({type(e).__name__}); simplify the file") from None
    check_size(doc, where, error, MAX_NODES)
    return doc


def _number(where: str, key: str, value: Any, kind: type) -> Any:
    """YAML reads `1e-4` (no dot) as a string; accept it as the number it means."""
    where = f"{where}." if not where.endswith(": ") else where
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise SpaceError(f"{where}{key}: {short(value)} is out of range; use a number between -{MAX_INT} and {MAX_INT}")
    try:
        number = float(value) if isinstance(value, str) else value
        # math.isfinite overflows on ints beyond a float's range: those are no use either
        ok = isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number)
    except (ValueError, OverflowError):
        ok = False
    if not ok:
        raise SpaceError(f"{where}{key}: expected a number, got {_short(value)}")
    if kind is int:
        if abs(number) > MAX_INT:
            raise SpaceError(f"{where}{key}: {short(value)} is out of range; use a number between -{MAX_INT} and "
                             f"{MAX_INT}")
        if float(number) != int(number):
            raise SpaceError(f"{where}{key}: expected a whole number, got {_short(value)}")
        return int(number)
    return float(number)


def _short(value: Any) -> str:
    """A value for a one-line message: a pasted 500-digit number or a long list stays short."""
    return short(value, 60)


def _check_value(where: str, name: str, value: Any, what: str) -> Any:
    try:
        typed = coerce(name, value)
        from_dict({name: typed})  # TrainConfig's own range checks (dropout in [0, 1), lr > 0, ...)
        return typed
    except ConfigError as e:
        raise SpaceError(f"{where}: {what} {_short(value)} is invalid: {e}") from None


def _spec(origin: str, name: str, raw: Any, builder: bool = False) -> dict[str, Any]:
    where = f"{origin}: params.{_name(name)}"
    if builder:
        return _builder_spec(where, name, raw)
    if name not in FIELD_TYPES:
        raise SpaceError(f"{where}: unknown hyperparameter{closest_field(name)}")
    if name in RESERVED:
        raise SpaceError(f"{where}: cannot be searched; {RESERVED[name]}")
    kind, spec = _spec_head(where, raw)
    field_type = FIELD_TYPES[name]
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}.choices: give a non-empty list, e.g. choices: [32, 64, 128]")
        if len(choices) > MAX_CHOICES:
            raise SpaceError(f"{where}.choices: {len(choices)} choices; at most {MAX_CHOICES} per parameter "
                             f"(for a number, search a range: type: int or float with low and high)")
        typed = [_check_value(where, name, c, "choice") for c in choices]
        if len(set(map(str, typed))) != len(typed):
            raise SpaceError(f"{where}.choices: repeated choice in {_short(choices)}; list each once")
        spec["choices"] = typed
    else:
        if field_type is str:
            raise SpaceError(f"{where}: {name} is a name, not a number; use type: categorical with choices")
        if field_type is bool:
            raise SpaceError(f"{where}: {name} is true or false, not a number; use type: categorical with "
                             f"choices: [false, true]")
        num = int if kind == "int" else float
        if field_type is int and kind == "float":
            raise SpaceError(f"{where}: {name} takes whole numbers; use type: int")
        low, high = _range(where, raw, num)
        spec.update(low=low, high=high)
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(f"{where}.log: expected true or false, got {_short(log)}")
        if log:
            if low <= 0:
                raise SpaceError(f"{where}: log scale needs low > 0 (got {low}); e.g. low: 1.0e-5")
            spec["log"] = True
        if "step" in raw:
            step = _number(where, "step", raw["step"], num)
            if step <= 0 or step > high - low:
                raise SpaceError(f"{where}.step: must be > 0 and at most high - low (got {step})")
            if log:
                raise SpaceError(f"{where}: step and log cannot be combined; drop one")
            spec["step"] = step
        if raw.get("one_minus"):
            if not 0 < low < high < 1:
                raise SpaceError(f"{where}: one_minus samples 1 - {name} on a log scale: needs 0 < low < high < 1")
            if log or "step" in raw:
                raise SpaceError(f"{where}: one_minus is already a log scale; drop log/step")
            spec["one_minus"] = True
        for key in ("low", "high"):
            _check_value(where, name, spec[key], key)
    if "when" in raw:
        when = raw["when"]
        if not isinstance(when, dict) or not when:
            raise SpaceError(f"{where}.when: expected a mapping like {{optimizer: [momentum, rmsprop]}}")
        spec["when"] = {str(k): v if isinstance(v, list) else [v] for k, v in when.items()}
    return spec


def _spec_head(where: str, raw: Any) -> tuple[str, dict[str, Any]]:
    """What every parameter spec must be: a mapping with a known type and only that type's keys."""
    if not isinstance(raw, dict):
        raise SpaceError(f"{where}: expected a mapping like {{type: float, low: 1e-4, high: 1e-1, log: true}}")
    kind = raw.get("type")
    if kind not in SPEC_KEYS:
        raise SpaceError(f"{where}.type: {_short(kind)} is not float, int or categorical")
    unknown = set(raw) - SPEC_KEYS[kind]
    if unknown:
        raise SpaceError(f"{where}: unknown key {_short(sorted(map(str, unknown))[0])} for type {kind}; allowed: {', '.join(sorted(SPEC_KEYS[kind]))}")
    return kind, {"type": kind, **_role(where, raw)}


def _range(where: str, raw: dict[str, Any], num: type) -> tuple[Any, Any]:
    for key in ("low", "high"):
        if key not in raw:
            raise SpaceError(f"{where}: missing '{key}'; give low and high")
    low, high = _number(where, "low", raw["low"], num), _number(where, "high", raw["high"], num)
    if low >= high:
        raise SpaceError(f"{where}: low must be < high (got {low} >= {high}); swap or widen them")
    return low, high


def _role(where: str, raw: dict[str, Any]) -> dict[str, Any]:
    if "role" not in raw:
        return {}
    if raw["role"] not in ROLES:
        raise SpaceError(f"{where}.role: {_short(raw['role'])} is not one of {', '.join(ROLES)}")
    return {"role": raw["role"]}


def _builder_spec(where: str, name: str, raw: Any) -> dict[str, Any]:
    """A parameter of your own builder: the same range syntax, its values passed as they are."""
    kind, spec = _spec_head(where, raw)
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices or len(choices) > MAX_CHOICES:
            raise SpaceError(f"{where}.choices: give a non-empty list of at most {MAX_CHOICES}, e.g. choices: [3, 5]")
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise SpaceError(f"{where}.choices: each choice must be a number, a name, true/false or null")
        spec["choices"] = choices
    else:
        num = int if kind == "int" else float
        low, high = _range(where, raw, num)
        spec.update(low=low, high=high)
        if raw.get("log"):
            if low <= 0:
                raise SpaceError(f"{where}: log scale needs low > 0 (got {low})")
            spec["log"] = True
        if "step" in raw:
            spec["step"] = _number(where, "step", raw["step"], num)
    if "when" in raw:
        when = raw["when"]
        if not isinstance(when, dict) or not when:
            raise SpaceError(f"{where}.when: expected a mapping like {{optimizer: [momentum, rmsprop]}}")
        spec["when"] = {str(k): v if isinstance(v, list) else [v] for k, v in when.items()}
    return spec


def _builder_names(origin: str, doc: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """Your builder (model: FILE.py:FUNCTION): its file's SHA-256 (the recorded one must still hold:
    checked before the file runs) and which of the space's names go to it."""
    from tunectl import builders
    from tunectl.config import FIELD_NAMES

    model = doc["model"]
    try:
        fn = builders.function(model, doc.get("model_sha256") or None,
                               "restore it, or give the file with that content (a worker: --model PATH:FUNCTION)")
        sha = builders.sha256(model)
        names, any_ok = builders.signature(fn)
        given = {str(k): None for part in ("params", "fixed") for k in (doc.get(part) or {})}
        routed = builders.route(given, model, FIELD_NAMES, names, any_ok, where="params/fixed ")
    except ConfigError as e:
        raise SpaceError(f"{origin}: {e}") from None
    return sha, tuple(routed["model_params"])


def parse_space(doc: Any, origin: str = "<space>") -> Space:
    if not isinstance(doc, dict):
        raise SpaceError(f"{origin}: expected a mapping with 'params' (and optionally fixed, model, dataset, epochs)")
    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), TOP_KEYS, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise SpaceError(f"{origin}: unknown top-level key {_name(unknown[0], quote=True)}; {hint}allowed: {', '.join(TOP_KEYS)}")
    params_raw = doc.get("params") or {}
    fixed_raw = doc.get("fixed") or {}
    if not isinstance(params_raw, dict) or not params_raw:
        raise SpaceError(f"{origin}: 'params' must map at least one hyperparameter to its range")
    if not isinstance(fixed_raw, dict):
        raise SpaceError(f"{origin}: 'fixed' must map hyperparameters to values, e.g. fixed: {{activation: relu}}")
    sha, own = _builder_names(origin, doc) if is_reference(doc.get("model")) else (None, ())
    specs = {str(name): _spec(origin, str(name), raw, str(name) in own) for name, raw in params_raw.items()}
    fixed = {}
    for name, value in fixed_raw.items():
        if name in own:  # your builder's: passed as written
            if name in specs:
                raise SpaceError(f"{origin}: '{name}' is both searched and fixed; keep one")
            fixed[name] = value
            continue
        if name not in FIELD_TYPES:
            raise SpaceError(f"{origin}: fixed.{_name(name)}: unknown hyperparameter{closest_field(str(name))}")
        if name in specs:
            raise SpaceError(f"{origin}: '{name}' is both searched and fixed; keep one")
        if name in RESERVED:
            raise SpaceError(f"{origin}: fixed.{name}: {RESERVED[name]}")
        fixed[name] = _check_value(f"{origin}: fixed.{name}", name, value, "value")
    for name, spec in specs.items():
        for key, values in spec.get("when", {}).items():
            if key not in specs and key not in fixed:
                raise SpaceError(
                    f"{origin}: params.{name}.when names {_name(key, quote=True)}, which is neither searched nor fixed here; "
                    f"add it to params or fixed, or drop the condition"
                )
            if key == name:
                raise SpaceError(f"{origin}: params.{name}.when refers to itself")
            if key not in own:
                spec["when"][key] = [_check_value(f"{origin}: params.{name}.when.{key}", key, v, "value") for v in values]
    epochs = doc.get("epochs", 20)
    epochs = _number(f"{origin}: ", "epochs", epochs, int)
    if epochs < 1:
        raise SpaceError(f"{origin}: epochs must be >= 1 (got {epochs})")
    _check_value(origin, "epochs", epochs, "epochs")  # TrainConfig's upper bound too
    model = doc.get("model")
    if model is not None and not is_reference(model):
        _check_value(f"{origin}: model", "model", model, "model")
    dataset = doc.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise SpaceError(f"{origin}: dataset must be a name such as digits or csv:PATH")
    return Space(_ordered(origin, specs), fixed, model, dataset, epochs, origin, sha, own)


def _name(name: Any, quote: bool = False, limit: int = 60) -> str:
    """A key from the user's file, bounded for a message (a 1 MB key is a key too)."""
    text = str(name)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"'{text}'" if quote else text


def _ordered(origin: str, specs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Order parameters so that every condition's parameter is suggested before it is tested."""
    done: dict[str, dict[str, Any]] = {}
    pending = dict(specs)
    while pending:
        ready = [n for n, s in pending.items() if all(k in done or k not in specs for k in s.get("when", {}))]
        if not ready:
            raise SpaceError(f"{origin}: the 'when' conditions of {', '.join(pending)} form a cycle; break it")
        for n in ready:
            done[n] = pending.pop(n)
    return done


def active(spec: dict[str, Any], values: dict[str, Any]) -> bool:
    return all(values.get(k) in allowed for k, allowed in spec.get("when", {}).items())


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """Ask the trial for each active parameter; return TrainConfig field values."""
    values: dict[str, Any] = dict(space.fixed)
    chosen: dict[str, Any] = {}
    for name, spec in space.params.items():
        if not active(spec, values):
            continue
        raw = _suggest_one(trial, space.optuna_name(name), spec)
        value = 1 - raw if spec.get("one_minus") else raw
        values[name] = chosen[name] = value
    return chosen


def chosen_from_params(specs: dict[str, dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's values by the space's names, from Optuna's params: what `suggest` returned for it
    (one_minus_beta -> beta = 1 - one_minus_beta, computed as suggest computes it), in space order."""
    chosen: dict[str, Any] = {}
    for name, spec in specs.items():
        key = f"one_minus_{name}" if spec.get("one_minus") else name
        if key in params:
            chosen[name] = 1 - params[key] if spec.get("one_minus") else params[key]
    return chosen


def _suggest_one(trial: Any, name: str, spec: dict[str, Any]) -> Any:
    """Ask Optuna for one value of the distribution the spec makes (_distribution is the one place
    that turns a spec into a range: int, float, log, step, one_minus, categorical)."""
    d = _distribution(spec)
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(name, d.choices)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)


def trial_config(space: Space, chosen: dict[str, Any], base: TrainConfig) -> TrainConfig:
    """The study's base config (model, seed, transfer source) + fixed + this trial's choices;
    your builder's own names go to it (model_params), with its file's recorded SHA-256."""
    values = {**space.fixed, **chosen, "epochs": space.epochs}
    own = {k: values.pop(k) for k in list(values) if k in space.builder_params}
    if space.model_sha256:
        values.update(model=space.model, model_sha256=space.model_sha256, model_params={**base.model_params, **own})
    return from_dict(values, base)


def dump_space(space: Space, comments: list[str] | None = None) -> str:
    header = "".join(f"# {line}\n" for line in (comments or []))
    return header + yaml.safe_dump(space.to_dict(), sort_keys=False, default_flow_style=None)
