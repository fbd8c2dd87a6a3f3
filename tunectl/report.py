"""Terminal rendering with rich: everything draws into a Console the caller passes in.

Plain data in (dicts, History.to_dict()), text out; no training or Optuna here.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


class TrainDisplay:
    """Babysitting one model: an epoch bar, a batch bar, and a line of numbers per epoch."""

    def __init__(self, console: Console, epochs: int, title: str = "training"):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        )
        self.epoch_task = self.progress.add_task(title, total=epochs)
        self.batch_task = self.progress.add_task("batches", total=1)
        self._last_batch_update = 0

    def __enter__(self) -> "TrainDisplay":
        self.progress.start()
        self.console.print("[dim]epoch  train_loss  train_err  dev_loss  dev_err   seconds[/]")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def on_batch(self, done: int, total: int) -> None:
        # redraw at most ~20 times an epoch: drawing must not cost more than training
        step = max(1, total // 20)
        if done == total or done % step == 0:
            self.progress.update(self.batch_task, completed=done, total=total)

    def on_epoch(self, epoch: int, m: dict[str, float]) -> None:
        self.progress.update(self.epoch_task, completed=epoch)
        self.console.print(
            f"{epoch:>5}  {fmt(m['train_loss']):>10}  {fmt(m['train_error']):>9}  {fmt(m['dev_loss']):>8}"
            f"  {fmt(m['dev_error']):>7}  {m['seconds']:>8.2f}"
        )


def train_summary(console: Console, result: dict[str, Any], task: str) -> None:
    unit = "RMSE" if task == "regression" else "error rate"
    t = Table(title=f"Run summary ({unit})", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    rows = [
        ("status", result["status"]),
        ("best epoch", f"{result['best_epoch']} of {result['epochs']}"),
        ("train error", fmt(result["train_error"])),
        ("dev error", fmt(result["dev_error"])),
        ("seconds / epoch", fmt(result["epoch_seconds"], 3)),
        ("saved to", result.get("out") or "-"),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)


def datasets_table(console: Console, rows: list[tuple[str, str]]) -> None:
    t = Table(title="Data sets", title_justify="left")
    t.add_column("name", style="bold")
    t.add_column("source")
    for name, where in rows:
        t.add_row(name, where)
    console.print(t)
