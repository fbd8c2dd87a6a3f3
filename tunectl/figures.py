"""The report's interactive figures: Optuna's plotly visualizations and tunectl's own, as plotly figures.

Optuna draws what it knows (history, per-epoch values, importances, slices, parallel coordinates,
contour); tunectl draws what only its records hold (train against dev per epoch, the workers'
timeline, the bias/variance bar) with plotly too, so that one plotly.js, inlined once by
html_report, makes every figure interactive (hover, zoom, select). Each function returns a
plotly Figure, or None when the study has too little to draw (the report says why); tests read
the figures' data, not their pixels.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import plotly.graph_objects as go

STATE_COLOURS = {"COMPLETE": "#2e7d32", "PRUNED": "#ef6c00", "FAIL": "#c62828", "RUNNING": "#1e88e5",
                 "WAITING": "#9e9e9e"}
FONT = {"family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "size": 12}


def _tidy(fig: go.Figure, height: int, log_y: bool = False, **layout: Any) -> go.Figure:
    """One look for every figure: white, compact margins, a log error axis when errors span decades."""
    # the page's width, not Optuna's fixed one (its slice plot asks 300 px a parameter)
    fig.update_layout(template="plotly_white", height=height, width=None, autosize=True,
                      margin={"l": 60, "r": 20, "t": 40, "b": 50}, font=FONT, **layout)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _optuna(draw: Callable[[], go.Figure]) -> go.Figure:
    with warnings.catch_warnings():  # optuna.visualization's experimental and few-trials warnings
        warnings.simplefilter("ignore")
        return draw()


def history(study, target: str, log_y: bool) -> go.Figure:
    import optuna.visualization as ov

    return _tidy(_optuna(lambda: ov.plot_optimization_history(study, target_name=target)), 380, log_y,
                 title=None)


def intermediate(study, target: str, log_y: bool) -> go.Figure:
    """Each trial's dev error after each epoch, a legend naming each trial (click one to hide it)."""
    import optuna.visualization as ov

    fig = _optuna(lambda: ov.plot_intermediate_values(study))
    for trace in fig.data:  # Optuna names them Trial0, Trial1, ...
        trace.name = f"trial {trace.name.removeprefix('Trial')}"
        trace.showlegend = True
    return _tidy(fig, 420, log_y, title=None, showlegend=True, xaxis_title="epoch", yaxis_title=target,
                 legend={"title": {"text": "trial"}})


def importances(study, values: dict[str, float], target: str) -> go.Figure:
    """Optuna's importance plot of exactly the numbers `tunectl show` prints (a given evaluator)."""
    import optuna.visualization as ov
    from optuna.importance import BaseImportanceEvaluator

    class Given(BaseImportanceEvaluator):
        def evaluate(self, study, params=None, *, target=None):
            return dict(values)

    fig = _optuna(lambda: ov.plot_param_importances(study, evaluator=Given(), target_name=target))
    return _tidy(fig, 120 + 28 * len(values), title=None)


def slices(study, target: str, log_y: bool) -> go.Figure:
    import optuna.visualization as ov

    return _tidy(_optuna(lambda: ov.plot_slice(study, target_name=target)), 380, log_y, title=None)


def parallel(study, target: str) -> go.Figure:
    """Every complete trial as one line across the parameters (drag on an axis to select a range)."""
    import optuna.visualization as ov

    return _tidy(_optuna(lambda: ov.plot_parallel_coordinate(study, target_name=target)), 440, title=None)


def contour(study, params: list[str], target: str) -> go.Figure:
    """Dev error over the two most important parameters (Optuna's contour, the trials as dots)."""
    import optuna.visualization as ov

    return _tidy(_optuna(lambda: ov.plot_contour(study, params=params, target_name=target)), 460, title=None)


def two_most_important(importances: dict[str, float] | None) -> list[str] | None:
    if not importances or len(importances) < 2:
        return None
    return sorted(importances, key=lambda k: -importances[k])[:2]


def timeline(records: list[dict[str, Any]]) -> go.Figure | None:
    """When each trial ran, one lane per worker (host:pid), its state as its colour."""
    import datetime

    rows = [r for r in records if r.get("start")]
    if not rows:
        return None
    now = max(r.get("end") or r["start"] for r in rows)
    lanes = sorted({r.get("worker") or "unknown" for r in rows})
    fig = go.Figure()
    for state in STATE_COLOURS:
        mine = [r for r in rows if r["state"] == state]
        if not mine:
            continue
        start = [datetime.datetime.fromisoformat(r["start"]) for r in mine]
        end = [datetime.datetime.fromisoformat(r.get("end") or now) for r in mine]
        fig.add_trace(go.Bar(
            name=state.lower(), orientation="h", y=[r.get("worker") or "unknown" for r in mine],
            base=[s.isoformat() for s in start],
            x=[max((e - s).total_seconds() * 1000, 1.0) for s, e in zip(start, end)],  # ms: a date axis's unit
            marker_color=STATE_COLOURS[state], customdata=[[r["number"], r.get("reason") or ""] for r in mine],
            hovertemplate="trial %{customdata[0]}: %{customdata[1]}<br>%{base|%H:%M:%S} for %{x:,.0f} ms"
                          "<extra>%{fullData.name}</extra>"))
    fig.update_xaxes(type="date", title="time")
    fig.update_yaxes(title="worker", categoryorder="array", categoryarray=lanes)
    return _tidy(fig, 140 + 36 * len(lanes), barmode="overlay", legend={"title": {"text": "state"}}, title=None)


def running_curve(record: dict[str, Any]) -> bool:
    """Whether a trial's per-epoch train error is the running average over the epoch (--fast-curves),
    not the eval-mode error on the fixed training sample."""
    return bool((record.get("config") or {}).get("fast_curves"))


def curves(board: list[dict[str, Any]], unit: str) -> go.Figure | None:
    """Train and dev error after each epoch of the top trials, each trace named by its trial."""
    from plotly.subplots import make_subplots

    top = [r for r in board if r.get("curve")]
    if not top:
        return None
    cols = min(2, len(top))
    rows = -(-len(top) // cols)
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes="all", subplot_titles=[
        f"#{i}: trial {r['number']}, dev {r['dev_error']:.4g}" for i, r in enumerate(top, 1)])
    for i, r in enumerate(top):
        row, col = i // cols + 1, i % cols + 1
        epochs = [c["epoch"] for c in r["curve"]]
        train = "train (running)" if running_curve(r) else "train"
        for key, dash in (("train_error", "dot"), ("dev_error", "solid")):
            fig.add_trace(go.Scatter(x=epochs, y=[c.get(key) for c in r["curve"]], mode="lines+markers",
                                     name=f"trial {r['number']} {train if key == 'train_error' else 'dev'}",
                                     line={"dash": dash},
                                     legendgroup=str(r["number"])), row=row, col=col)
        if r.get("best_epoch"):
            fig.add_vline(x=r["best_epoch"], line_dash="dot", line_color="grey", row=row, col=col)
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title=unit, col=1)
    return _tidy(fig, 300 * rows + 60)


def diagnosis(train: float, dev: float, human: float, unit: str) -> go.Figure:
    """One bar from 0 to the dev error: human-level error, avoidable bias, variance."""
    fig = go.Figure()
    for label, width, colour in (("human-level error", human, "#9e9e9e"),
                                 ("avoidable bias (train - human)", train - human, "#ef6c00"),
                                 ("variance (dev - train)", dev - train, "#1e88e5")):
        fig.add_trace(go.Bar(name=f"{label}: {width:.4g}", x=[max(width, 0.0)], y=["best trial"], orientation="h",
                             marker_color=colour, hovertemplate=f"{label}: {width:.6g}<extra></extra>"))
    fig.update_xaxes(title=unit, range=[0, max(dev, train, human, 1e-9) * 1.15])
    return _tidy(fig, 200, barmode="stack", legend={"orientation": "h", "y": -0.6}, yaxis_visible=False)
