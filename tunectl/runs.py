"""One training run (`tunectl train`): checked before any work, trained, written whole to a run folder.

A run folder holds `config.yaml` (a params file: every TrainConfig field, plus the data it was
trained on), `history.json`, `model.pt` and `split.json`. `tunectl export` writes the same
shape, so `tunectl train --params DIR/params.yaml` reproduces a trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tunectl import studies
from tunectl.config import TrainConfig, from_dict
from tunectl.data import DataSettings, Splits, load_splits

RUNS = Path("studies/runs")  # default home of run folders, relative to where tunectl runs


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
         device: str | None = None) -> Plan:
    """Check everything a run needs before it starts: the device, the output folder, the
    configuration, the data, and that the model builds on them. Nothing is written."""
    from tunectl.train import check, check_device

    check_device(device)  # an unknown or absent device: one line before the data load
    if out is not None:
        studies.check_new_folder(out, force)  # before the data load and the training, not after
    cfg = from_dict(values)
    splits = load_splits(data)
    check(cfg, splits)  # a batch too large, cnn on tabular data, transfer without a source
    out = Path(out) if out else studies.new_run_dir(RUNS, data.dataset, cfg.model)
    return Plan(cfg, data, splits, out, force, device)


def execute(p: Plan, on_epoch: Callable | None = None, on_batch: Callable | None = None) -> dict[str, Any]:
    """Train, then write the run folder whole (or not at all). Returns History.to_dict() plus
    `out` (where it went: `out-2` if another process made `out` meanwhile) and `moved`."""
    from tunectl.models import save_checkpoint
    from tunectl.train import fit

    hist = fit(p.cfg, p.splits, on_epoch=on_epoch, on_batch=on_batch, device=p.device)
    data = p.data.to_dict()
    with studies.NewFolder(p.out, p.force) as run:  # the run folder appears whole, or not at all
        studies.write_text(run.path / "config.yaml", studies.params_text(p.cfg, p.data))
        studies.write_json(run.path / "history.json",
                           {**hist.to_dict(), "task": p.splits.task, "config": p.cfg.to_dict(), "data": data})
        studies.write_json(run.path / "split.json", p.splits.manifest)
        if hist.model is not None:
            save_checkpoint(run.path / "model.pt", hist.checkpoint({"data": data, "manifest": p.splits.manifest}))
    return {**hist.to_dict(), "out": str(run.final), "moved": run.final != p.out, "task": p.splits.task}
