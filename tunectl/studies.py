"""Where studies and runs live on disk: study folders, run folders, params files.

Everything written here goes through a temporary file and a rename, so a kill or a
full disk never leaves half a file that a later command would trust.

A run folder holds `config.yaml` (a params file: every TrainConfig field, plus the data
it was trained on), `history.json`, `model.pt` and `split.json`. `tunectl export`
writes the same shape, so `tunectl train --params DIR/params.yaml` reproduces a trial.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from tunectl.config import TrainConfig, from_dict
from tunectl.errors import ConfigError

DATA_KEYS = ("dataset", "data_dir", "target", "task", "image_size", "split", "split_seed", "train_fraction")


def read_params(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A params file -> (TrainConfig fields, data settings). Unknown keys are refused."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--params {path}: no such file; give a params.yaml from `tunectl export` or a run's config.yaml") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"--params {path}: not valid YAML{where}; fix the syntax") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--params {path}: expected a mapping of hyperparameter: value")
    data = doc.pop("data", None) or {}
    if not isinstance(data, dict) or set(data) - set(DATA_KEYS):
        bad = sorted(set(data) - set(DATA_KEYS)) if isinstance(data, dict) else data
        raise ConfigError(f"--params {path}: data: unknown keys {bad}; allowed: {', '.join(DATA_KEYS)}")
    try:
        from_dict(doc)  # validate names and types now, naming the file
    except ConfigError as e:
        raise ConfigError(f"--params {path}: {e}") from None
    return doc, data


def params_text(cfg: TrainConfig, data: dict[str, Any]) -> str:
    body = {**cfg.to_dict(), "data": {k: v for k, v in data.items() if v is not None}}
    return "# tunectl params: every TrainConfig field; `tunectl train --params THIS_FILE` reruns it\n" + yaml.safe_dump(
        body, sort_keys=False
    )


def new_run_dir(root: Path, dataset: str, model: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset.split("/")[-1])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{safe}-{model}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{safe}-{model}-{stamp}-{n}"
    return path


def write_json(path: Path, obj: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
