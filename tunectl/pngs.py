"""The report's static figures (`tunectl report --static`): Optuna's matplotlib plots and tunectl's own, as PNGs.

Each figure is a base64 PNG data URI, so a static report opens anywhere, runs no script and
needs no network; the interactive report draws the same figures with plotly (figures.py).
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from typing import Any, Callable

from tunectl.report import fmt

TOP_CURVES = 4  # learning curves of this many best trials



def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window, works with no display
    import matplotlib.pyplot as plt

    return plt


def png(fig, width: float | None = None, height: float | None = None) -> str:
    """A figure as a base64 data URI, and the figure closed (a long-lived process must not leak them)."""
    plt = _pyplot()
    if width and height:
        fig.set_size_inches(width, height)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def optuna_png(draw: Callable[[], Any], width: float, height: float, log_y: bool = False,
                legend: bool = True, ylabel: str | None = None, xlabel: str | None = None) -> str:
    """Draw with one of optuna.visualization.matplotlib's functions (experimental: quiet its warnings),
    then tidy it: a log error axis when errors span decades, no 20-entry legend, readable ticks."""
    import numpy as np
    from matplotlib.ticker import NullFormatter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = draw()
    flat = list(axes.flat) if isinstance(axes, np.ndarray) else [axes]
    for ax in flat:
        if log_y:
            ax.set_yscale("log")
        if ylabel:
            ax.set_ylabel(ylabel)
        if xlabel:
            ax.set_xlabel(xlabel)
        if not legend and ax.get_legend():
            ax.get_legend().remove()
        ax.xaxis.set_minor_formatter(NullFormatter())  # log axes: no crowded minor labels
        ax.tick_params(axis="x", labelsize=8)
    if len(flat) > 1:
        for ax in flat:
            ax.tick_params(axis="x", labelrotation=30)
    return png(flat[0].figure, width, height)


def given_importances(values: dict[str, float]):
    """An Optuna importance evaluator that returns tune.importances()'s numbers, so that Optuna
    draws exactly what the terminal prints (recomputing could disagree in the last digits)."""
    from optuna.importance import BaseImportanceEvaluator

    class Given(BaseImportanceEvaluator):
        def evaluate(self, study, params=None, *, target=None):
            return dict(values)

    return Given()


def curves_png(board: list[dict[str, Any]], unit: str) -> str:
    plt = _pyplot()
    top = board[:TOP_CURVES]
    cols = min(2, len(top))
    rows = math.ceil(len(top) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 3.1 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(top):]:
        ax.set_visible(False)
    for rank, (ax, r) in enumerate(zip(axes.flat, top), 1):
        epochs = [row["epoch"] for row in r["curve"]]
        running = bool((r.get("config") or {}).get("fast_curves"))  # --fast-curves: the running average
        ax.plot(epochs, [row["train_error"] for row in r["curve"]], "o-", ms=3,
                label="train (running)" if running else "train")
        ax.plot(epochs, [row["dev_error"] for row in r["curve"]], "s-", ms=3, label="dev")
        if r.get("best_epoch"):
            ax.axvline(r["best_epoch"], color="grey", ls=":", lw=1, label=f"kept: epoch {r['best_epoch']}")
        ax.set_title(f"#{rank}: trial {r['number']}, dev {fmt(r['dev_error'])}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(unit)
    fig.tight_layout()
    return png(fig)


def diagnosis_png(train: float, dev: float, human: float, unit: str) -> str:
    """One bar from 0 to the dev error, split into human-level error, avoidable bias and variance."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 1.9))
    parts = [("human-level error", human, "#9e9e9e"), ("avoidable bias (train - human)", train - human, "#ef6c00"),
             ("variance (dev - train)", dev - train, "#1e88e5")]
    left = 0.0
    for label, width, color in parts:
        ax.barh(0, max(width, 0.0), left=left, color=color, label=f"{label}: {fmt(width)}", height=0.5)
        left += max(width, 0.0)
    for x, name in ((train, "train"), (dev, "dev")):
        ax.axvline(x, color="black", lw=1)
        ax.text(x, 0.33, f"{name} {fmt(x)}", ha="center", va="bottom", fontsize=9)
    ax.set_yticks([])
    ax.set_ylim(-0.4, 0.6)
    ax.set_xlim(0, max(dev, train, human, 1e-9) * 1.15)
    ax.set_xlabel(unit)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=3, fontsize=9, frameon=False)
    return png(fig)
