"""TrainConfig: every hyperparameter by name, with its default and the reason for it.

Flat and commented like nanoGPT's config: a search space, `--set key=value`, a
`params.yaml` export and an Optuna trial's params all use these field names.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from tunectl.builders import is_reference
from tunectl.errors import ConfigError

MODELS = ("mlp", "cnn", "transfer", "rnn")
CELLS = ("rnn", "gru", "lstm")  # model: rnn: torch's nn.RNN (tanh), nn.GRU or nn.LSTM
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
AUGMENTS = ("none", "light", "strong")
ARCHS = ("tunectl", "resnet18", "mobilenet_v3_small")
MAX_SEED = 2**32 - 1  # torch, NumPy and Optuna's samplers all take 32-bit seeds
LIMITS = {  # field: (the largest value accepted, why)
    "depth": (256, ""),
    "width": (65_536, ""),
    "conv_layers": (16, " (each block halves the image side)"),
    "filters": (4096, ""),
    "kernel_size": (63, ""),
    "batch_size": (2**31 - 1, ""),
    "epochs": (1_000_000, ""),
    "patience": (1_000_000, ""),
    "hidden": (65_536, ""),
    "embed": (65_536, ""),
}
MAX_ADV_EPS = 10.0  # adv_eps is in standard deviations of the inputs: 10 of them is no longer the same input


@dataclass(frozen=True)
class TrainConfig:
    # --- model -------------------------------------------------------------
    model: str = "mlp"  # mlp | cnn | transfer | rnn, or your own builder FILE.py:FUNCTION (a ConvNet: try it on images)
    model_params: dict[str, Any] = field(default_factory=dict)  # your builder's own parameters (channels=16, ...)
    model_sha256: str = ""  # SHA-256 of your builder's file when it was recorded: a changed file is refused
    depth: int = 2  # hidden dense layers; raise it (or width) when train error is far above human error
    width: int = 128  # units per hidden layer; a bigger network is the first cure for high bias
    activation: str = "relu"  # relu | leaky_relu (He init) | tanh | sigmoid (Xavier init)
    dropout: float = 0.0  # raise it when dev error lags train error (high variance)
    conv_layers: int = 2  # ConvNet blocks of conv + activation + 2x2 max-pool
    filters: int = 16  # filters of the first conv block, doubled in each next block
    kernel_size: int = 3  # odd, so that 'same' padding keeps the spatial size
    # --- recurrent nets (model: rnn; `depth` is its stacked layers, `dropout` acts between them) --
    cell: str = "gru"  # rnn | gru | lstm: gated cells (GRU, LSTM) carry information over many more steps
    hidden: int = 64  # units of the recurrent state; the capacity knob of a recurrent net
    bidirectional: bool = False  # read each sequence both ways; the head sees both final states
    embed: int = 16  # token sequences (integers, characters): the size of each token's embedding
    # --- transfer learning ---------------------------------------------------
    arch: str = "tunectl"  # body for --model transfer: a tunectl checkpoint, resnet18 or mobilenet_v3_small
    init_from: str = ""  # checkpoint (tunectl model.pt, or torchvision weights) the body starts from
    freeze: str = "none"  # none | body | all_but_last_N: what of the pretrained body stays fixed
    body_lr_scale: float = 1.0  # lr multiplier for unfrozen body layers; < 1 keeps pretrained features
    # --- optimization --------------------------------------------------------
    optimizer: str = "adam"  # sgd | momentum | rmsprop | adam; Adam is the forgiving default
    lr: float = 1e-3  # the most important hyperparameter: search it on a log scale
    beta: float = 0.9  # momentum's (and RMSProp's) moving-average weight: averages ~1/(1-beta) steps
    beta1: float = 0.9  # Adam's first-moment weight (momentum)
    beta2: float = 0.999  # Adam's second-moment weight (RMSProp part)
    eps: float = 1e-8  # Adam/RMSProp's guard against division by zero; rarely worth tuning
    weight_decay: float = 0.0  # L2 regularization; raise it for high variance
    batch_size: int = 64  # 1 = stochastic, 0 = the full batch, else a mini-batch (powers of two fit hardware)
    epochs: int = 20  # the most epochs to run; train longer when dev error is still falling
    patience: int = 0  # early stopping: stop after this many epochs without a better dev error (0 = off)
    augment: str = "none"  # none | light | strong: image augmentation of training batches (variance cure)
    clip_norm: float = 0.0  # clip the gradient's norm to this (0 = off): the cure for exploding gradients (RNNs)
    adv_eps: float = 0.0  # FGSM adversarial training: each mini-batch also trained on inputs moved eps (in std units)
    seed: int = 0  # weights, dropout and batch order; same seed + same data = same result on CPU
    # --- measuring ---------------------------------------------------------------
    fast_curves: bool = False  # per-epoch train error as the running average (dropout on, weights moving) instead
    #   of an eval-mode pass over a dev-sized sample of the training split: saves that pass, curves less comparable

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return from_dict(changes, base=self)


def short(value: Any, limit: int = 100) -> str:
    """A bounded repr for a one-line message: a pasted 500-digit number, a 10 MB string or a YAML
    alias bomb (a list that expands to billions of items) never reaches the screen whole, and
    building the text never walks more than a few items of it."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 6, 6, 4, 6
    r.maxstring, r.maxlong, r.maxother = limit, 40, limit
    try:
        text = r.repr(value)
    except (ValueError, RecursionError):  # an int past Python's digit limit for str()
        return "a number with too many digits" if isinstance(value, int) else f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_size(doc: Any, where: str, error: type[Exception] = ConfigError, limit: int = 100_000) -> None:
    """Refuse a document that holds more than `limit` values once its YAML aliases are expanded.

    PyYAML shares an aliased object rather than copying it, so loading a 'billion laughs' file is
    cheap; it is everything after (a repr, a JSON dump, Optuna's storage) that expands it. The
    count is memoized by object, so it costs one visit per distinct list or mapping.
    """
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(obj: Any) -> int:
        if not isinstance(obj, (list, dict)):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise error(f"{where}: a YAML alias refers to the list or mapping that holds it (a cycle); "
                        f"write the values out")
        busy.add(key)
        items = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else obj
        n = 1
        for item in items:
            n += size(item)
            if n > limit:
                break
        busy.discard(key)
        sizes[key] = n
        return n

    try:
        n = size(doc)
    except RecursionError:
        raise error(f"{where}: nested too deeply; simplify the file") from None
    if n > limit:
        raise error(f"{where}: holds more than {limit} values once its YAML aliases (*name) are expanded; "
                    f"write a smaller file without alias chains")


FIELD_TYPES: dict[str, type] = get_type_hints(TrainConfig)
BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False, "1": True, "0": False}
FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))


def closest_field(name: str) -> str:
    """A 'did you mean' hint for an unknown hyperparameter name."""
    match = difflib.get_close_matches(str(name)[:100], FIELD_NAMES, n=1)
    if match:
        return f" (did you mean '{match[0]}'?)"
    known = ", ".join(FIELD_NAMES)
    if len(known) > 240:  # a one-line message: the list cut at a name, the rest in `tunectl train --help`'s --set
        known = known[:known.rfind(", ", 0, 240)] + ", ..."
    return f" (known: {known})"


def coerce(name: str, value: Any) -> Any:
    """Convert a value (often a string from the command line or YAML) to the field's type."""
    if name not in FIELD_TYPES:
        raise ConfigError(f"unknown hyperparameter {short(str(name), 60)}{closest_field(str(name))}")
    kind = FIELD_TYPES[name]
    if name == "model_params":  # a builder's own parameters: names to YAML scalars or lists
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"model_params: expected a mapping of parameter: value, got {short(value)}")
        return dict(value)
    try:
        if kind is bool:  # YAML's and the command line's spellings, never Python's truthiness ('no' is not True)
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in BOOL_WORDS:
                return BOOL_WORDS[value.strip().lower()]
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            if isinstance(value, str):
                if name == "batch_size" and value.strip().lower() == "full":
                    return 0  # the full batch
                try:
                    return int(value)  # exactly: a seed past 2**53 must not go through a float
                except ValueError:
                    pass
                as_float = float(value)  # accept '1e3' and '64.0'
                if not as_float.is_integer():
                    raise ValueError
                return int(as_float)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)  # float('1e-4') works where YAML's reader gave up
        if kind is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise TypeError
            return str(value)
    except (TypeError, ValueError, OverflowError):
        what, example = ("true or false", "true") if kind is bool else (kind.__name__, getattr(TrainConfig, name))
        raise ConfigError(f"{name}: expected {what}, got {short(value)}; e.g. --set {name}={example}") from None
    return value


def from_dict(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    base = base or TrainConfig()
    typed = {k: coerce(k, v) for k, v in values.items()}
    return dataclasses.replace(base, **typed)


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse repeated `--set key=value` into typed values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set lr=3e-4")
        # a name TrainConfig does not know may be your builder's: typed as YAML types it, checked later
        out[key] = coerce(key, value.strip()) if key in FIELD_TYPES else _yaml_scalar(value.strip())
    return out


def _yaml_scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text) if text else text
    except yaml.YAMLError:
        return text


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: {short(value)} is not one of {', '.join(allowed)}")


def validate(cfg: TrainConfig) -> None:
    """Refuse values no run could use, with the fix in the message."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if FIELD_TYPES[f.name] is float and not math.isfinite(value):
            raise ConfigError(f"{f.name}: must be a finite number, got {value}")
    if not is_reference(cfg.model):
        _choice("model", cfg.model, MODELS)
    elif cfg.init_from:
        raise ConfigError(f"init_from is for --model transfer, not for your own model {cfg.model.rpartition('/')[2]}; "
                          f"load weights inside your builder instead")
    _choice("activation", cfg.activation, ACTIVATIONS)
    _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("augment", cfg.augment, AUGMENTS)
    _choice("arch", cfg.arch, ARCHS)
    _choice("cell", cfg.cell, CELLS)
    for name in ("bidirectional", "fast_curves"):
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"{name}: expected true or false, got {short(getattr(cfg, name))}")
    if cfg.freeze not in ("none", "body") and not (
        cfg.freeze.startswith("all_but_last_") and cfg.freeze.removeprefix("all_but_last_").isdigit()
    ):
        raise ConfigError(f"freeze: {short(cfg.freeze)} is not none, body or all_but_last_N (e.g. all_but_last_1)")
    checks = [
        (cfg.depth >= 0, "depth", "must be >= 0 (0 = no hidden layer: logistic/linear regression)"),
        (cfg.width >= 1, "width", "must be >= 1"),
        (0.0 <= cfg.dropout < 1.0, "dropout", "must be in [0, 1), e.g. 0.2"),
        (cfg.conv_layers >= 1, "conv_layers", "must be >= 1"),
        (cfg.filters >= 1, "filters", "must be >= 1"),
        (cfg.kernel_size >= 1 and cfg.kernel_size % 2 == 1, "kernel_size", "must be odd (1, 3, 5, ...)"),
        (cfg.body_lr_scale >= 0, "body_lr_scale", "must be >= 0"),
        (cfg.hidden >= 1, "hidden", "must be >= 1, e.g. 64"),
        (cfg.embed >= 1, "embed", "must be >= 1, e.g. 16"),
        (cfg.clip_norm >= 0, "clip_norm", "must be >= 0 (0 = no clipping), e.g. 1.0"),
        (0 <= cfg.adv_eps <= MAX_ADV_EPS, "adv_eps", f"must be in [0, {MAX_ADV_EPS:g}] (standard deviations of the "
                                                    f"inputs; 0 = off), e.g. 0.1"),
        (cfg.lr > 0, "lr", "must be > 0, e.g. 1e-3"),
        (0.0 <= cfg.beta < 1.0, "beta", "must be in [0, 1), e.g. 0.9"),
        (0.0 <= cfg.beta1 < 1.0, "beta1", "must be in [0, 1), e.g. 0.9"),
        (0.0 <= cfg.beta2 < 1.0, "beta2", "must be in [0, 1), e.g. 0.999"),
        (cfg.eps > 0, "eps", "must be > 0, e.g. 1e-8"),
        (cfg.weight_decay >= 0, "weight_decay", "must be >= 0"),
        (cfg.batch_size >= 0, "batch_size", "must be >= 0 (1 = stochastic, 0 = full batch)"),
        (cfg.epochs >= 1, "epochs", "must be >= 1"),
        (cfg.patience >= 0, "patience", "must be >= 0 (0 = no early stopping)"),
        (0 <= cfg.seed <= MAX_SEED, "seed", f"must be between 0 and {MAX_SEED}"),
    ]
    # upper bounds: a pasted extra digit must be refused here, not found by the OOM killer in trial 3
    checks += [(getattr(cfg, name) <= cap, name, f"must be <= {cap}{why}") for name, (cap, why) in LIMITS.items()]
    for ok, name, fix in checks:
        if not ok:
            raise ConfigError(f"{name}={short(getattr(cfg, name))}: {fix}")
