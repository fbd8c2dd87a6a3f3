"""The morning report: one self-contained HTML file that tells a study's whole story.

`gather` collects plain data first (results.summarize, results.importances, the best trial's
diagnosis, the evaluations record) plus the Optuna study, which Optuna's own matplotlib
visualizations need; `render` then draws. Number formatting is shared with the terminal
(report.fmt, report.duration), so `tunectl show` and this file print the same digits.
Figures are PNGs embedded as data URIs, so the file opens anywhere without a network;
every piece of text goes through html.escape.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from tunectl import studies
from tunectl.report import attack_text, duration, fmt, verdict_label
from tunectl import files
from tunectl.errors import StudyError

EVALUATIONS = "evaluations.json"  # written by `tunectl evaluate` (evaluate.py)
TOP_CURVES = 4  # learning curves of this many best trials

CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d232b}
main{max-width:1080px;margin:0 auto;padding:20px 28px 40px}
h1{font-size:26px;margin:8px 0 0}h2{font-size:19px;margin:0 0 10px;color:#243b55}
.sub{color:#5b6675;margin:2px 0 16px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:14px 18px;margin:0 0 16px}
table{border-collapse:collapse;font-size:14px}td,th{padding:3px 12px 3px 0;text-align:left;vertical-align:top}
th{color:#5b6675;font-weight:600;border-bottom:1px solid #dde1e6}
table.kv th{border:0;padding-right:18px;white-space:nowrap}
.num{font-variant-numeric:tabular-nums;text-align:right}
.grid{display:grid;grid-template-columns:auto 1fr;gap:6px 36px}
h3{font-size:15px;margin:4px 0 6px}
.grid.glance{grid-template-columns:1fr auto}.glance td{white-space:nowrap}.glance table.kv td{white-space:normal}
img{max-width:100%;display:block;margin:6px auto}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:6px 10px;margin:8px 0}
.warn{background:#fdecea;border-left:4px solid #c62828;padding:6px 10px;margin:8px 0}
.verdict{font-size:17px;font-weight:600}
code{background:#eef0f3;padding:0 4px;border-radius:3px}
"""


# ----------------------------------------------------------------------------- figures


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


def _optuna_png(draw: Callable[[], Any], width: float, height: float, log_y: bool = False,
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


def _given_importances(values: dict[str, float]):
    """An Optuna importance evaluator that returns tune.importances()'s numbers, so that Optuna
    draws exactly what the terminal prints (recomputing could disagree in the last digits)."""
    from optuna.importance import BaseImportanceEvaluator

    class Given(BaseImportanceEvaluator):
        def evaluate(self, study, params=None, *, target=None):
            return dict(values)

    return Given()


def _curves_png(board: list[dict[str, Any]], unit: str) -> str:
    plt = _pyplot()
    top = board[:TOP_CURVES]
    cols = min(2, len(top))
    rows = math.ceil(len(top) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 3.1 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(top):]:
        ax.set_visible(False)
    for rank, (ax, r) in enumerate(zip(axes.flat, top), 1):
        epochs = [row["epoch"] for row in r["curve"]]
        ax.plot(epochs, [row["train_error"] for row in r["curve"]], "o-", ms=3, label="train")
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


def _diagnosis_png(train: float, dev: float, human: float, unit: str) -> str:
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


# ----------------------------------------------------------------------------- html pieces

e = html.escape


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{e(alt)}">'


def _note(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{e(text)}</p>'


def _kv(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{e(str(c))}</td>'
                                   for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{e(title)}</h2>{body}</section>'


def _value(v: Any) -> str:
    return fmt(v) if isinstance(v, float) else str(v)


def _params(params: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in (params or {}).items())


def _space_rows(space: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, s in (space.get("params") or {}).items():
        if s["type"] == "categorical":
            rng = ", ".join(map(str, s["choices"]))
        else:
            rng = (f"{s['low']} .. {s['high']}" + (" (log)" if s.get("log") else "")
                   + (f" step {s['step']}" if s.get("step") else ""))
        when = "; ".join(f"{k} in {', '.join(map(str, v))}" for k, v in (s.get("when") or {}).items())
        rows.append([name, s["type"], rng, when or "always"])
    return rows


# ----------------------------------------------------------------------------- sections


def _glance(s: dict[str, Any], records: list[dict[str, Any]]) -> str:
    from collections import Counter

    st = s["states"]
    failures = [r for r in records if r["state"] == "FAIL"]
    # pruned at which epoch, diverged, failed how: the story of the trials that did not finish
    stopped = Counter(str(r["reason"]).split(":")[0] for r in records if r["state"] in ("PRUNED", "FAIL"))
    sizes = s.get("split") or {}
    space = s.get("space") or {}
    epochs_all = s["epochs_used"] + s["epochs_saved"]
    saved = f"{s['epochs_saved']}" + (f" ({100 * s['epochs_saved'] / epochs_all:.0f}% of the epochs without pruning)"
                                      if epochs_all else "")
    facts = [
        ("data set", s.get("dataset") or "-"),
        ("task", s.get("task") or "-"),
        ("split sizes", ", ".join(f"{k} {v}" for k, v in sizes.items()) or "-"),
        ("model", space.get("model") or "-"),
        ("sampler", s.get("sampler") or "-"),
        ("pruner", s.get("pruner") or "-"),
        ("trials", f"{s['n_trials']}: complete {st['COMPLETE']}, pruned {st['PRUNED']}, failed {st['FAIL']}, "
                   f"running {st['RUNNING']}"),
        ("why trials stopped", "; ".join(f"{k} ×{n}" for k, n in sorted(stopped.items())) or "-"),
        ("wall time", duration(s.get("wall_seconds"))),
        ("epochs trained", f"{s['epochs_used']} (a trial may run {s.get('max_epochs') or '-'})"),
        ("epochs saved by pruning", saved),
        ("storage", s.get("storage") or "-"),
    ]
    fixed = space.get("fixed") or {}
    body = (f'<div class="grid glance"><div>{_kv(facts)}</div><div><h3>Search space</h3>'
            + _table(["param", "type", "range", "searched when"], _space_rows(space))
            + (f"<p>fixed: {e(_params(fixed))}</p>" if fixed else "") + "</div></div>")
    if failures:
        body += "<h3>Failed trials</h3>" + _table(["trial", "reason"], [[f["number"], f["reason"]] for f in failures])
    return _section("glance", "The study at a glance", body)


def _leaderboard(s: dict[str, Any], verdicts: dict[int, str]) -> str:
    board = s.get("leaderboard") or []
    if not board:
        return _section("leaderboard", "Leaderboard", _note("No complete trial yet: nothing to rank."))
    from tunectl.noise import with_se

    rows = [[i, r["number"], with_se(r["dev_error"], r.get("dev_error_se")), "≈ best" if r.get("within_noise") else "",
             fmt(r["train_error"]), r.get("best_epoch") or "-", r["epochs"],
             fmt(r.get("seconds"), 1), verdict_label(verdicts.get(r["number"])), _params(r["params"])]
            for i, r in enumerate(board, 1)]
    near = sum(bool(r.get("within_noise")) for r in board)
    why = _note(f"± is the standard error of each dev error (binomial for an error rate, bootstrapped for an RMSE); "
                f"≈ best: {near} trial{'s' * (near != 1)} less than two standard errors of the difference above the "
                f"best, a race the dev set does not decide (`tunectl recheck` re-trains them with new seeds).") \
        if near else ""
    return _section("leaderboard", "Leaderboard (dev error ± its standard error, lower is better)",
                    _table(["#", "trial", "dev error", "noise", "train error", "best epoch", "epochs", "seconds",
                            "diagnosis", "params"], rows, {2, 4, 5, 6, 7}) + why)


def _best(s: dict[str, Any]) -> str:
    b = s.get("best")
    if not b:
        return _section("best", "Best trial", _note("No complete trial yet, so no best trial."))
    from tunectl.noise import with_se

    head = (f"<p>Trial <b>{b['number']}</b>: dev error <b>{e(with_se(b['dev_error'], b.get('dev_error_se')))}</b>, train error "
            f"{e(fmt(b['train_error']))}, best epoch {e(str(b.get('best_epoch')))} of {e(str(b.get('epochs')))}.</p>")
    searched = [(k, _value(v)) for k, v in (b.get("params") or {}).items()]
    rest = [(k, _value(v)) for k, v in (b.get("config") or {}).items() if k not in (b.get("params") or {})]
    body = head + '<div class="grid"><div><h3>Searched</h3>' + _kv(searched) + "</div>"
    body += "<div><h3>The rest of its config</h3><details><summary>every other TrainConfig value</summary>"
    body += _kv(rest) + "</details></div></div>"
    return _section("best", "Best trial", body)


def _figure(sid: str, title: str, why: str, draw: Callable[[], str] | None, missing: str, after: str = "") -> str:
    if draw is None:
        return _section(sid, title, _note(missing))
    return _section(sid, title, f"<p>{e(why)}</p>" + _img(draw(), title) + after)


def _importance_table(importances: dict[str, float] | None) -> str:
    if not importances:
        return ""
    rows = [[k, f"{v:.3f}"] for k, v in importances.items()]  # the digits `tunectl show` prints
    return "<details><summary>the numbers</summary>" + _table(["param", "importance"], rows, {1}) + "</details>"


def _diagnosis(s: dict[str, Any], d: dict[str, Any] | None, missing: str | None, unit: str) -> str:
    b = s.get("best")
    if not b or b.get("train_error") is None or b.get("dev_error") is None:
        return _section("diagnosis", "Bias and variance of the best trial",
                        _note("No complete trial with train and dev error yet: nothing to diagnose."))
    human = float(d.get("human_error") or 0.0) if d else 0.0
    body = _img(_diagnosis_png(b["train_error"], b["dev_error"], human, unit), "bias and variance")
    if d:
        verdict = verdict_label(d.get("diagnosis"))
        th = d.get("thresholds") or {}
        body = (f'<p class="verdict">Trial {b["number"]}, verdict: {e(verdict)}</p><div class="grid"><div>'
                + _kv([("human-level error", fmt(d.get("human_error"))), ("train error", fmt(d.get("train_error"))),
                       ("dev error", fmt(d.get("dev_error"))),
                       ("avoidable bias", f"{fmt(d.get('avoidable_bias'))} (threshold {fmt(th.get('bias'))})"),
                       ("variance", f"{fmt(d.get('variance'))} (threshold {fmt(th.get('variance'))})")])
                + "</div><div>" + body + "</div></div>")
        evidence = [x.get("text", "") for x in d.get("evidence") or [] if isinstance(x, dict)]
        if evidence:
            body += "<h3>What the curves say</h3><ul>" + "".join(f"<li>{e(x)}</li>" for x in evidence) + "</ul>"
        actions = [x.get("text", "") if isinstance(x, dict) else str(x) for x in d.get("actions") or []]
        if actions:
            body += "<h3>What to do next</h3><ol>" + "".join(f"<li>{e(a)}</li>" for a in actions) + "</ol>"
        body += (f"<p>Human-level error is taken as 0 here; <code>tunectl diagnose {e(s['study'])} --human-error E"
                 f"</code> redoes this with yours, and <code>--next-space OUT.yaml</code> writes the next search.</p>")
    else:
        body = _note(missing or "No diagnosis available.") + body
    return _section("diagnosis", "Bias and variance of the best trial", body)


def _evaluations(evals: list[dict[str, Any]] | None, problem: str | None) -> str:
    if problem:
        return _section("evaluations", "Test-set evaluations", _note(problem, "warn"))
    if not evals:
        return _section("evaluations", "Test-set evaluations",
                        "<p>The test set has not been looked at: it is still an unbiased judge. "
                        "<code>tunectl evaluate STUDY</code> takes the one look.</p>")
    rows = [[v.get("time", "-"), v.get("trial", "-"), fmt(v.get("test_error")), fmt(v.get("dev_error")),
             fmt(v.get("train_error")), "yes" if v.get("refit") else "no"] for v in evals]
    body = ""
    if len(evals) > 1:
        body += _note(f"The test set was evaluated {len(evals)} times: the test errors below are no longer an "
                      f"unbiased estimate of the error on new data (a choice made by looking at them is "
                      f"tuned to the test set).", "warn")
    head = ["time", "trial", "test error", "dev error", "train error", "refit on train+dev"]
    numeric = {2, 3, 4}
    if any(v.get("attack") for v in evals):  # clean against robust error, for each look that attacked
        head[3:3] = ["test error under attack", "attack"]
        for v, row in zip(evals, rows):
            a = v.get("attack") or {}
            row[3:3] = [fmt(a.get("test_error")), attack_text(a) if a else "-"]
        body += ("<p>Robustness: the test error under an adversarial attack (FGSM or PGD, every input value "
                 "moved by at most eps) next to the clean test error of the same look.</p>")
        numeric = {2, 3, 5, 6}
    return _section("evaluations", "Test-set evaluations", body + _table(head, rows, numeric))


# ----------------------------------------------------------------------------- the report


def load_evaluations(folder: Path) -> tuple[list[dict[str, Any]], str | None]:
    """studies/<study>/evaluations.json as a list, and a note when it cannot be read (the report still renders)."""
    try:
        return studies.read_evaluations(folder), None
    except StudyError as e:
        return [], f"{e}: the record of test-set looks is damaged"


def render(g: dict[str, Any]) -> str:
    """The whole report as one HTML string, drawn from what `gather` collected (nothing is read here
    but the optuna.Study that Optuna's own plots take)."""
    import optuna.visualization.matplotlib as ov

    s, study, importances, records = g["summary"], g["study"], g["importances"], g["records"]
    unit = "RMSE" if s.get("task") == "regression" else "error rate"
    n_complete = s["states"]["COMPLETE"]
    target = {"target_name": f"dev {unit}"}
    board = [r for r in (s.get("leaderboard") or []) if r.get("curve")]
    with_steps = any(t.intermediate_values for t in study.get_trials(deepcopy=False))
    values = [v for t in study.get_trials(deepcopy=False) for v in [t.value, *t.intermediate_values.values()]
              if v is not None and math.isfinite(v)]
    log_y = bool(values) and min(values) > 0 and max(values) / min(values) > 20  # errors spanning decades

    def optuna_plot(fn: Callable[..., Any], width: float, height: float, **tidy: Any) -> Callable[[], str]:
        return lambda: _optuna_png(fn, width, height, **tidy)

    method = g.get("importance_method") or {"method": "Optuna", "why": "How much each parameter matters to dev error"}
    no_importances = (f"Importances need at least 5 complete trials; this study has {n_complete}." if n_complete < 5
                      else "Optuna could not compute importances for this study.")
    parts = [
        _glance(s, records),
        _leaderboard(s, g["verdicts"]),
        _best(s),
        _figure("history", "Optimization history",
                "Dev error of each complete trial in the order they ran, and the best so far.",
                optuna_plot(lambda: ov.plot_optimization_history(study, **target), 9, 3.4, log_y=log_y)
                if n_complete else None, "No complete trial yet: no history to plot."),
        _figure("intermediate", "Dev error per epoch, every trial",
                "What the pruner saw: each trial's dev error after each epoch; the short lines are pruned trials.",
                optuna_plot(lambda: ov.plot_intermediate_values(study), 9, 3.4, log_y=log_y, legend=False,
                            ylabel=f"dev {unit}", xlabel="epoch") if with_steps else None,
                "No trial reported an epoch yet."),
        _figure("importances", f"Parameter importances ({method['method']})",
                f"{method['why']}; the numbers `tunectl show` prints.",
                optuna_plot(lambda: ov.plot_param_importances(study, evaluator=_given_importances(importances),
                                                              **target), 8, 3.2) if importances else None,
                no_importances, _importance_table(importances)),
        _figure("slice", "Each parameter against dev error",
                "One dot per complete trial (darker: later): where the good trials sit in each parameter's range.",
                optuna_plot(lambda: ov.plot_slice(study, **target), 13, 3.6, log_y=log_y) if n_complete >= 2 else None,
                f"A slice view needs at least 2 complete trials; this study has {n_complete}."),
        _figure("curves", f"Learning curves of the top {min(TOP_CURVES, len(board))} trials" if board
                else "Learning curves of the top trials",
                "Train and dev error after each epoch; the dotted line marks the epoch whose weights were kept.",
                (lambda: _curves_png(board, unit)) if board else None,
                "No complete trial with a recorded curve yet."),
        _diagnosis(s, g["diagnosis"], g["diagnosis_missing"], unit),
        _evaluations(g["evaluations"], g["evaluations_problem"]),
    ]
    if n_complete == 0:
        parts.insert(0, _note(f"This study has no complete trial yet ({s['n_trials']} trials: pruned "
                              f"{s['states']['PRUNED']}, failed {s['states']['FAIL']}); most sections are empty. "
                              f"Rerun the `tunectl tune` command that started it to resume it.", "warn"))
    elif n_complete == 1:
        parts.insert(0, _note("This study has a single complete trial: there is nothing to compare it with yet, "
                              "and importances need at least 5."))
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>tunectl report: {e(s['study'])}</title><style>{CSS}</style></head>"
            f"<body><main><h1>Study {e(s['study'])}</h1>"
            f'<p class="sub">tunectl morning report, written {e(stamp)}; errors are {e(unit)}s on the dev split '
            f"unless marked test.</p>{''.join(parts)}</main></body></html>\n")


def write_report(path: Path, html_text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(path, html_text)  # atomic: a browser never opens half a report
    return path


def _diagnose_best(record: dict[str, Any] | None, meta: dict[str, Any], study: str
                   ) -> tuple[dict[str, Any] | None, str | None]:
    """`tunectl diagnose STUDY`'s verdict on the best trial (diagnose.py, human error 0), or why there is none."""
    if record is None:
        return None, None
    from tunectl.diagnose import diagnose_subject, trial_subject
    from tunectl.errors import TunectlError

    try:
        return diagnose_subject(trial_subject(record, meta, study)).to_dict(), None
    except TunectlError as err:
        return None, f"No diagnosis: {err}"


def gather(name: str, storage: str | None = None, root: Path | str = studies.ROOT) -> dict[str, Any]:
    """Everything the report shows about study `name`, as plain data (read through results.py and
    diagnose.py), plus the optuna.Study for Optuna's own plots."""
    from tunectl.diagnose import study_verdicts
    from tunectl.results import ATTR, importance_method, importances, open_study, summarize, trial_records

    study = open_study(name, storage, root)
    summary = summarize(study, storage or studies.default_storage_url(name, Path(root)))
    records = trial_records(study)
    best = summary["best"]["number"] if summary["best"] else None
    meta = study.user_attrs.get(ATTR, {})
    diagnosis, missing = _diagnose_best(next((r for r in records if r["number"] == best), None), meta, name)
    evaluations, problem = load_evaluations(studies.study_dir(name, Path(root)))
    imp = importances(study)  # quiet: Optuna's notes on few trials per regime are silenced there
    return {"summary": summary, "study": study, "importances": imp, "importance_method": importance_method(),
            "records": records,
            "verdicts": study_verdicts(summary["leaderboard"], meta),  # the column `tunectl show` prints
            "diagnosis": diagnosis, "diagnosis_missing": missing, "evaluations": evaluations,
            "evaluations_problem": problem}


def report_study(name: str, storage: str | None = None, root: Path | str = studies.ROOT,
                 out: Path | str | None = None) -> Path:
    """`tunectl report`: gather, render, write atomically (studies/<study>/report.html by default)."""
    from tunectl.diagnose import check_out_file

    if out is not None:  # a folder (or a path under a file) is bad input: refused before the study is read
        check_out_file(out, "--out", "report.html")
    text = render(gather(name, storage, root))
    path = Path(out) if out else studies.study_dir(name, Path(root)) / "report.html"
    check_out_file(path, "--out", "report.html")
    return write_report(path, text)
