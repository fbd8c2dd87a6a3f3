"""One training run (`tunectl train`): checked before any work, trained, written whole to a run folder.

A run folder holds `config.yaml` (a params file: every TrainConfig field, plus the data it was
trained on), `history.json`, `model.pt` and `split.json`. `tunectl export` writes the same
shape, so `tunectl train --params DIR/params.yaml` reproduces a trial.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from tunectl import files
from tunectl.builders import is_reference, resolve
from tunectl.config import TrainConfig, from_dict
from tunectl.data import DataSettings, Splits, load_splits
from tunectl.errors import ConfigError

RUNS = Path("studies/runs")  # default home of run folders, relative to where tunectl runs


def read_params(path: Path):
    """A params file -> (TrainConfig fields, DataSettings). Unknown keys and wrong types are refused."""
    from tunectl.config import check_size, short
    from tunectl.data import DataSettings
    from tunectl.errors import DataError

    path = Path(path)
    where = f"--params {path}"
    try:
        if path.is_dir():
            raise ConfigError(f"{where}: is a folder; give the params.yaml in it (from `tunectl export`) "
                              f"or a run's config.yaml")
        with open(path, "rb") as f:  # a bounded read: /dev/zero or a huge file is refused, not swallowed
            raw = f.read(1_000_001)
        if len(raw) > 1_000_000:
            raise ConfigError(f"{where}: too large for a params file (more than 1000000 bytes); is it the right file?")
        doc = yaml.safe_load(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file; give a params.yaml from `tunectl export` or a run's config.yaml") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                          f"save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read it ({e.strerror or e}); check the path") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}; fix the syntax") from None
    except (ValueError, RecursionError) as e:  # a number past Python's digit limit; nesting too deep
        raise ConfigError(f"{where}: cannot read it as YAML ({type(e).__name__}); simplify the file") from None
    check_size(doc, where, ConfigError)
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping of hyperparameter: value")
    data = doc.pop("data", None) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: data: expected a mapping such as {{dataset: digits, split_seed: 0}}, "
                          f"got {short(data)}")
    try:
        data = DataSettings.from_dict(data)
    except DataError as e:
        raise ConfigError(f"{where}: {e}") from None
    bad = [k for k in doc if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: key {short(bad[0], 60)} is not a hyperparameter name")
    if is_reference(doc.get("model")):  # your own builder: its path is relative to this file, its names its own
        doc["model"] = resolve(doc["model"], path.parent)
        return doc, data
    try:
        from_dict(doc)  # validate names and types now, naming the file
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return doc, data


def params_text(cfg: TrainConfig, data) -> str:
    """A params file: every TrainConfig field, and the DataSettings under `data:`."""
    body = {**cfg.to_dict(), "data": data.to_dict()}
    return "# tunectl params: every TrainConfig field; `tunectl train --params THIS_FILE` reruns it\n" + yaml.safe_dump(
        body, sort_keys=False
    )


def new_run_dir(root: Path, dataset: str, model: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset.split("/")[-1])
    model = Path(model.rpartition(":")[0]).stem if ":" in model else model  # your builder: its file's name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{safe}-{model}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{safe}-{model}-{stamp}-{n}"
    return path


@dataclass
class Plan:
    """A run that passed every check: its configuration, its data and where it will be written."""

    cfg: TrainConfig
    data: DataSettings
    splits: Splits
    out: Path
    force: bool
    device: str | None


def plan(values: dict[str, Any], data: DataSettings, out: Path | None = None, force: bool = False,
         device: str | None = None, allow_changed: bool = False) -> Plan:
    """Check everything a run needs before it starts: the device, the output folder, the
    configuration (your own builder's parameters and file hash included), the data, and that the
    model builds on them and gives the right outputs. Nothing is written."""
    from tunectl.models import config_for
    from tunectl.train import check, check_device

    check_device(device)  # an unknown or absent device: one line before the data load
    if out is not None:
        files.check_new_folder(out, force)  # before the data load and the training, not after
    if is_reference(values.get("model")):
        values = {**values, "model": resolve(values["model"])}
    cfg = config_for(values, allow_changed)
    splits = load_splits(data, raw=True)  # images stay bytes, scaled per mini-batch: same numbers, 4x less memory
    check(cfg, splits)  # a batch too large, cnn on tabular data, transfer without a source
    out = Path(out) if out else new_run_dir(RUNS, data.dataset, cfg.model)
    return Plan(cfg, data, splits, out, force, device)


def execute(p: Plan, on_epoch: Callable | None = None, on_batch: Callable | None = None) -> dict[str, Any]:
    """Train, then write the run folder whole (or not at all). Returns History.to_dict() plus
    `out` (where it went: `out-2` if another process made `out` meanwhile) and `moved`."""
    from tunectl.models import save_checkpoint
    from tunectl.train import fit

    hist = fit(p.cfg, p.splits, on_epoch=on_epoch, on_batch=on_batch, device=p.device)
    data = p.data.to_dict()
    with files.NewFolder(p.out, p.force) as run:  # the run folder appears whole, or not at all
        files.write_text(run.path / "config.yaml", params_text(p.cfg, p.data))
        files.write_json(run.path / "history.json",
                           {**hist.to_dict(), "task": p.splits.task, "config": p.cfg.to_dict(), "data": data})
        files.write_json(run.path / "split.json", p.splits.manifest)
        if hist.model is not None:
            save_checkpoint(run.path / "model.pt", hist.checkpoint({"data": data, "manifest": p.splits.manifest}))
    return {**hist.to_dict(), "out": str(run.final), "moved": run.final != p.out, "task": p.splits.task}
