"""The user's own Python: a model builder or a data loader named FILE.py:FUNCTION, run from the bytes it was hashed from.

A builder is `FUNCTION(input_shape, out_dim, **params) -> torch.nn.Module` returning raw
outputs; a loader is `FUNCTION() -> (x, y)` or `(x, y, task)`. A file reference is read once,
hashed (SHA-256), and executed from exactly those bytes, so the code that runs is the code
whose hash a study or checkpoint records; nothing is written beside the file (no
__pycache__). `package.module:FUNCTION` imports an installed module instead. The file is
Python code that runs with the user's rights, like any training script.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import sys
import types
from pathlib import Path
from typing import Any, Callable

from tunectl.errors import ConfigError

# tunectl's own model-shape fields: with a builder, a name among these that the builder's signature
# names goes to the builder (a ConvNet of one's own has its own kernel_size and dropout)
MODEL_FIELDS = ("depth", "width", "activation", "dropout", "conv_layers", "filters", "kernel_size", "cell", "hidden",
                "bidirectional", "embed")
_loaded: dict[tuple[str, str], types.ModuleType] = {}  # (absolute path, SHA-256) -> the module run from those bytes


def is_reference(model: Any) -> bool:
    """FILE.py:FUNCTION or package.module:FUNCTION (tunectl's own models have no colon)."""
    return isinstance(model, str) and ":" in model and bool(model.rpartition(":")[2])


def resolve(ref: str, base: Path | str | None = None) -> str:
    """A file reference made absolute (relative to `base`, a space file's or params file's folder,
    else the current folder); a package.module reference unchanged."""
    file, _, function = ref.rpartition(":")
    if not file.endswith(".py"):
        return ref
    path = Path(file).expanduser()
    if not path.is_absolute():
        path = Path(base or ".") / path
    return f"{path.resolve()}:{function}"


def file_of(ref: str) -> Path | None:
    file = ref.rpartition(":")[0]
    return Path(file) if file.endswith(".py") else None


def label(ref: str) -> str:
    """How a message names the reference: the file's name and the function (convnet.py:build)."""
    file, _, function = ref.rpartition(":")
    return f"{Path(file).name}:{function}" if file.endswith(".py") else ref


def sha256(ref: str) -> str:
    """The SHA-256 of a file reference's file ('' for package.module references)."""
    path = file_of(ref)
    if path is None:
        return ""
    return hashlib.sha256(_read(path, ref)).hexdigest()


def unchanged(ref: str, recorded: str | None, allow: bool = False,
              hint: str = "restore it, or add --allow-changed-model to use the file as it is now") -> str:
    """The SHA-256 the builder's file has now, refused (without running the file) when it is not
    the `recorded` one, unless `allow`."""
    digest = sha256(ref)
    if recorded and digest and digest != recorded and not allow:
        raise ConfigError(f"{file_of(ref).name}: changed since it was recorded (SHA-256 {recorded[:12]}, now "
                          f"{digest[:12]}); {hint}")
    return digest


def _read(path: Path, ref: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (named by {label(ref)}); give the path of the .py file that defines "
                          f"the function, e.g. --model convnet.py:build") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or type(e).__name__}); check the path") from None


def function(ref: str, expected_sha: str | None = None,
             hint: str = "restore it, or add --allow-changed-model to use the file as it is now") -> Callable:
    """The function `ref` names. A file runs only from bytes whose SHA-256 is `expected_sha` (when
    given): a changed file is refused before any of it runs."""
    module_name, _, name = ref.rpartition(":")
    path = file_of(ref)
    if path is not None:
        data = _read(path, ref)
        digest = hashlib.sha256(data).hexdigest()
        if expected_sha and digest != expected_sha:
            raise ConfigError(f"{path.name}: changed since it was recorded (SHA-256 {expected_sha[:12]}, now "
                              f"{digest[:12]}); {hint}")
        module = _loaded.get((str(path), digest)) or _run(path, data, digest, ref)
        where = path.name
    else:
        import importlib

        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # noqa: BLE001 - ImportError, or the module's own code failing
            raise ConfigError(f"{ref}: cannot import {module_name} ({type(e).__name__}: {_first(e)}); give "
                              f"FILE.py:FUNCTION or an installed package.module:FUNCTION") from None
        where = module_name
    fn = getattr(module, name, None)
    if not callable(fn):
        names = sorted(k for k, v in vars(module).items() if inspect.isfunction(v) and not k.startswith("_"))
        near = difflib.get_close_matches(name, names, n=1)
        hint_text = f"did you mean '{near[0]}'?" if near else f"functions there: {', '.join(names[:8]) or 'none'}"
        raise ConfigError(f"{where}: has no function '{name}'; {hint_text}")
    return fn


def _run(path: Path, data: bytes, digest: str, ref: str) -> types.ModuleType:
    """Execute the file's bytes as a fresh module (registered so that its classes pickle and
    dataclasses work), writing nothing to disk."""
    module = types.ModuleType(f"tunectl_user_{path.stem}_{digest[:12]}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        exec(compile(data, str(path), "exec"), module.__dict__)  # noqa: S102 - the user's own model file, by design
    except Exception as e:  # noqa: BLE001 - a syntax error or the file's own code failing
        del sys.modules[module.__name__]
        raise ConfigError(f"{path.name}: running it failed ({type(e).__name__}: {_first(e)}); fix the file "
                          f"(it must run on its own: python {path.name})") from None
    _loaded[(str(path), digest)] = module
    return module


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:160]


# ----------------------------------------------------------------------------- builders


def signature(fn: Callable) -> tuple[tuple[str, ...], bool]:
    """(the names a builder takes after input_shape and out_dim, whether it takes **kwargs)."""
    params = list(inspect.signature(fn).parameters.values())[2:]
    names = tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def route(values: dict[str, Any], ref: str, fields: tuple[str, ...], names: tuple[str, ...], any_ok: bool,
          where: str = "") -> dict[str, Any]:
    """Split hyperparameter values between tunectl (TrainConfig `fields`) and the builder: a name
    that is not a field, or a model-shape field that the builder names, goes to the builder.
    A name neither accepts is refused with the closest accepted name."""
    core: dict[str, Any] = {}
    own: dict[str, Any] = dict(values.get("model_params") or {})
    for key, value in values.items():
        if key == "model_params":
            continue
        if key in fields and not (key in MODEL_FIELDS and key in names and key not in own):
            core[key] = value  # (a model-shape field beside model_params' own value is tunectl's: a saved config)
        elif key in names or any_ok:
            own[key] = value
        else:
            accepted = [*names, *(f for f in fields if f not in MODEL_FIELDS)]
            near = difflib.get_close_matches(str(key), accepted, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" ({label(ref)} takes: {', '.join(names) or 'nothing'})"
            raise ConfigError(f"{where}{str(key)[:60]!r}: neither a tunectl hyperparameter nor a parameter of "
                              f"{label(ref)}{hint}")
    return {**core, "model_params": own}


def build(ref: str, expected_sha: str | None, input_shape: tuple[int, ...], out_dim: int,
          params: dict[str, Any]):
    """Call the builder; refuse (one line naming the file) anything but an nn.Module."""
    from torch import nn

    fn = function(ref, expected_sha)
    try:
        model = fn(tuple(input_shape), int(out_dim), **params)
    except Exception as e:  # noqa: BLE001 - the user's code: any failure is one line naming it
        raise ConfigError(f"{label(ref)} raised {type(e).__name__}: {_first(e)} (called with input_shape="
                          f"{tuple(input_shape)}, out_dim={out_dim}, {params}); fix the builder") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{label(ref)} returned a {type(model).__name__}, not a torch.nn.Module; return the "
                          f"network (e.g. nn.Sequential(...))")
    return model


def check_outputs(ref: str, model, x, out_dim: int) -> None:
    """One mini-batch of two examples through the model, in eval mode (no dropout, BatchNorm's running
    statistics): the outputs must be (2, out_dim) raw values."""
    import torch

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x[:2])
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{label(ref)}: the model failed on a mini-batch of shape {tuple(x[:2].shape)} "
                          f"({type(e).__name__}: {_first(e)}); fix the builder") from None
    finally:
        model.train(was)
    shape = tuple(getattr(out, "shape", ()))
    if shape != (len(x[:2]), out_dim):
        raise ConfigError(f"{label(ref)}: the model's outputs have shape {shape} for a mini-batch of "
                          f"{len(x[:2])}; expected ({len(x[:2])}, {out_dim}): {out_dim} raw value(s) per example")


# ----------------------------------------------------------------------------- a study's builder on a worker


def worker_copy(name: str, doc: dict[str, Any], model: str | None) -> str:
    """The builder this worker will run: the file the study recorded, or the copy `--model` names;
    either way its SHA-256 must be the study's. Checked without running the file; a file this
    machine does not have is never looked for elsewhere."""
    ref = resolve(model) if is_reference(model) else doc["model"]
    if model is not None and not is_reference(model):
        raise ConfigError(f"study '{name}' tunes your builder {label(doc['model'])}, not {model}; "
                         f"drop --model, or give this machine's copy with --model PATH:FUNCTION")
    path, func = file_of(ref), ref.rpartition(":")[2]
    if path is None:
        return ref
    if not path.is_file():
        raise ConfigError(f"{path.name}: study '{name}' tunes {label(ref)} from {path}, which this machine "
                         f"does not have; give this worker its copy with --model PATH/{path.name}:{func}")
    recorded = doc.get("model_sha256")
    if recorded and sha256(ref) != recorded:
        raise ConfigError(f"{path.name}: not the file study '{name}' was tuned with (SHA-256 {recorded[:12]}, here "
                         f"{sha256(ref)[:12]}); give this worker the study's file with --model PATH:{func}")
    return ref


# ----------------------------------------------------------------------------- data loaders


def load_data(ref: str) -> tuple[Any, Any, str | None]:
    """`py:FILE.py:FUNCTION` data: the loader's (x, y) or (x, y, task)."""
    fn = function(ref, None)
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{label(ref)} raised {type(e).__name__}: {_first(e)}; fix the loader") from None
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
        raise ConfigError(f"{label(ref)} returned a {type(out).__name__}; return (x, y) or (x, y, task) as "
                          f"arrays or tensors")
    x, y, *rest = out
    task = rest[0] if rest else None
    if task is not None and task not in ("binary", "multiclass", "regression"):
        raise ConfigError(f"{label(ref)}: the task {str(task)[:40]!r} is not binary, multiclass or regression")
    return x, y, task
