"""The morning report: one self-contained HTML file that tells a study's whole story.

`gather` collects plain data first (results.summarize, results.importances, the best trial's
diagnosis, the test looks, the runs that made the study) plus the Optuna study, which Optuna's
own visualizations need; `render` then draws. Number formatting is shared with the terminal
(report.fmt, report.duration), so `tunectl show` and this file print the same digits.
Figures are interactive plotly figures (figures.py) with plotly.js inlined once in the page, so
the file works offline; `static=True` embeds PNGs instead (pngs.py) and runs no script at all.
Every piece of text goes through html.escape.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any, Callable

from tunectl import studies
from tunectl.report import attack_text, duration, fmt, verdict_label
from tunectl import files
from tunectl.errors import StudyError

EVALUATIONS = "evaluations.json"  # written by `tunectl evaluate` (evaluate.py)
TOP_CURVES = 4  # learning curves of this many best trials
TOP_PRUNED = 10  # pruned trials listed under the leaderboard, best dev error first

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
img{max-width:100%;display:block;margin:6px auto}.fig{width:100%;min-height:120px}
tr.pruned td{color:#8a5a00}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:6px 10px;margin:8px 0}
.warn{background:#fdecea;border-left:4px solid #c62828;padding:6px 10px;margin:8px 0}
.verdict{font-size:17px;font-weight:600}
code{background:#eef0f3;padding:0 4px;border-radius:3px}
"""


# ----------------------------------------------------------------------------- html pieces

e = html.escape


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{e(alt)}">'


def _note(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{e(text)}</p>'


def _kv(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] = frozenset(), pruned_from: int | None = None) -> str:
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    trs = "".join(("<tr class=pruned>" if pruned_from is not None and n >= pruned_from else "<tr>")
                  + "".join(f'<td{" class=num" if i in numeric else ""}>{e(str(c))}</td>'
                            for i, c in enumerate(r)) + "</tr>" for n, r in enumerate(rows))
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


def _leaderboard(s: dict[str, Any], verdicts: dict[int, str], records: list[dict[str, Any]]) -> str:
    """The complete trials ranked by dev error, then the best pruned ones with the epoch they stopped at
    (what a pruned trial reached is worth seeing: a trial pruned early may have been promising)."""
    board = s.get("leaderboard") or []
    pruned = sorted((r for r in records if r["state"] == "PRUNED" and r.get("dev_error") is not None),
                    key=lambda r: (r["dev_error"], r["number"]))[:TOP_PRUNED]
    if not board and not pruned:
        return _section("leaderboard", "Leaderboard", _note("No complete trial yet: nothing to rank."))
    from tunectl.noise import with_se

    head = ["#", "trial", "state", "dev error", "noise", "train error", "best epoch", "epochs", "seconds", "diagnosis",
            "params"]
    rows = [[i, r["number"], "complete", with_se(r["dev_error"], r.get("dev_error_se")),
             "≈ best" if r.get("within_noise") else "", fmt(r["train_error"]), r.get("best_epoch") or "-",
             r["epochs"], fmt(r.get("seconds"), 1), verdict_label(verdicts.get(r["number"])), _params(r["params"])]
            for i, r in enumerate(board, 1)]
    for r in pruned:
        rows.append(["-", r["number"], f"{r['reason']}" if r.get("reason") else f"pruned at epoch {r['epochs']}",
                     with_se(r["dev_error"], r.get("dev_error_se")), "", fmt(r["train_error"]),
                     r.get("best_epoch") or "-", r["epochs"], fmt(r.get("seconds"), 1), "-", _params(r["params"])])
    body = _table(head, rows, {3, 5, 6, 7, 8}, pruned_from=len(board))
    if not board:
        body = _note("No complete trial yet: the pruned trials, by the best dev error they reached.") + body
    near = sum(bool(r.get("within_noise")) for r in board)
    if near:
        body += _note(f"± is the standard error of each dev error (binomial for an error rate, bootstrapped for an "
                      f"RMSE); ≈ best: {near} trial{'s' * (near != 1)} less than two standard errors of the difference "
                      f"above the best, a race the dev set does not decide (`tunectl recheck` re-trains them with new "
                      f"seeds).")
    return _section("leaderboard", "Leaderboard (dev error ± its standard error, lower is better)", body)


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
    """A figure's section: `draw()` returns its HTML (a plotly div, or an <img> when static)."""
    if draw is None:
        return _section(sid, title, _note(missing))
    return _section(sid, title, f"<p>{e(why)}</p>" + draw() + after)


def _plotly_div(fig, sid: str) -> str:
    """A plotly figure as a div and the call that draws it; plotly.js itself is in the page once."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{sid}",
                       config={"displaylogo": False, "responsive": True})


def _importance_table(importances: dict[str, float] | None) -> str:
    if not importances:
        return ""
    rows = [[k, f"{v:.3f}"] for k, v in importances.items()]  # the digits `tunectl show` prints
    return "<details><summary>the numbers</summary>" + _table(["param", "importance"], rows, {1}) + "</details>"


def _diagnosis(s: dict[str, Any], d: dict[str, Any] | None, missing: str | None, unit: str,
               draw: Callable[[float, float, float], str]) -> str:
    b = s.get("best")
    if not b or b.get("train_error") is None or b.get("dev_error") is None:
        return _section("diagnosis", "Bias and variance of the best trial",
                        _note("No complete trial with train and dev error yet: nothing to diagnose."))
    human = float(d.get("human_error") or 0.0) if d else 0.0
    body = draw(b["train_error"], b["dev_error"], human)
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


def _environment(runs: list[dict[str, Any]]) -> str:
    """What ran the study: each `tunectl tune` (the creator, every resume, every joined worker)."""
    if not runs:
        return _section("environment", "Environment", _note(
            "This study records no runs (it was made before tunectl recorded them)."))
    last = runs[-1]
    facts = [("tunectl", last.get("tunectl", "-")), ("Python", last.get("python", "-")),
             ("torch", last.get("torch", "-")), ("Optuna", last.get("optuna", "-")), ("device", last.get("device", "-")),
             ("host", last.get("host", "-")), ("git commit", last.get("git") or "not a git working folder")]
    rows = [[r.get("time", "-"), r.get("host", "-"), r.get("device", "-"), r.get("git") and r["git"][:12] or "-",
             r.get("command", "-")] for r in runs]
    hosts = sorted({str(r.get("host")) for r in runs})
    body = (f"<p>The latest run's machine and versions; {len(runs)} run{'s' * (len(runs) > 1)} of "
            f"<code>tunectl tune</code> on {len(hosts)} machine{'s' * (len(hosts) > 1)} made this study.</p>"
            + _kv(facts) + "<h3>Every run</h3>" + _table(["started", "host", "device", "git", "command"], rows))
    return _section("environment", "Environment", body)


# ----------------------------------------------------------------------------- the report


def load_evaluations(folder: Path, study=None) -> tuple[list[dict[str, Any]], str | None]:
    """Every look at the test set (the study's record and evaluations.json), and a note when the
    local record cannot be read (the report still renders)."""
    from tunectl.results import test_looks

    try:
        return test_looks(study, folder), None
    except StudyError as e:
        return [], f"{e}: the record of test-set looks is damaged"


def plan(g: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's figures, in order: each one's id, title, what it shows, and how to draw it
    (a plotly figure, and a PNG for --static), or why it cannot be drawn."""
    import optuna.visualization.matplotlib as ovm

    from tunectl import figures, pngs

    s, study, imp = g["summary"], g["study"], g["importances"]
    unit = "RMSE" if s.get("task") == "regression" else "error rate"
    target = f"dev {unit}"
    n_complete = s["states"]["COMPLETE"]
    trials = study.get_trials(deepcopy=False)
    with_steps = any(t.intermediate_values for t in trials)
    values = [v for t in trials for v in [t.value, *t.intermediate_values.values()] if v is not None and math.isfinite(v)]
    log_y = bool(values) and min(values) > 0 and max(values) / min(values) > 20  # errors spanning decades
    board = [r for r in (s.get("leaderboard") or []) if r.get("curve")][:TOP_CURVES]
    top2 = figures.two_most_important(imp)
    method = g.get("importance_method") or {"method": "Optuna", "why": "How much each parameter matters to dev error"}
    kw = {"target_name": target}

    def png(fn, w, h, **tidy):
        return lambda: pngs.optuna_png(fn, w, h, **tidy)

    few = f"needs at least 5 complete trials; this study has {n_complete}."
    return [
        {"sid": "history", "title": "Optimization history",
         "why": "Dev error of each complete trial in the order they ran, and the best so far.",
         "missing": "No complete trial yet: no history to plot.", "ok": n_complete > 0,
         "fig": lambda: figures.history(study, target, log_y),
         "png": png(lambda: ovm.plot_optimization_history(study, **kw), 9, 3.4, log_y=log_y)},
        {"sid": "intermediate", "title": "Dev error per epoch, every trial",
         "why": "What the pruner saw: each trial's dev error after each epoch; the short lines are pruned "
                "trials. The legend names each trial: click one to hide it, double-click to show it alone.",
         "missing": "No trial reported an epoch yet.", "ok": with_steps,
         "fig": lambda: figures.intermediate(study, target, log_y),
         "png": png(lambda: ovm.plot_intermediate_values(study), 9, 3.4, log_y=log_y, legend=False,
                    ylabel=target, xlabel="epoch")},
        {"sid": "importances", "title": f"Parameter importances ({method['method']})",
         "why": f"{method['why']}; the numbers `tunectl show` prints.",
         "missing": (f"Importances {few}" if n_complete < 5 else "Optuna could not compute importances for this study."),
         "ok": bool(imp), "after": _importance_table(imp),
         "fig": lambda: figures.importances(study, imp, target),
         "png": png(lambda: ovm.plot_param_importances(study, evaluator=pngs.given_importances(imp), **kw), 8, 3.2)},
        {"sid": "slice", "title": "Each parameter against dev error",
         "why": "One dot per complete trial (darker: later): where the good trials sit in each parameter's range.",
         "missing": f"A slice view needs at least 2 complete trials; this study has {n_complete}.",
         "ok": n_complete >= 2, "fig": lambda: figures.slices(study, target, log_y),
         "png": png(lambda: ovm.plot_slice(study, **kw), 13, 3.6, log_y=log_y)},
        {"sid": "parallel", "title": "Parallel coordinates",
         "why": "Each complete trial is one line through its parameters to its dev error; drag along an axis "
                "to keep only the trials in that range.",
         "missing": f"Parallel coordinates need at least 2 complete trials; this study has {n_complete}.",
         "ok": n_complete >= 2, "fig": lambda: figures.parallel(study, target),
         "png": png(lambda: ovm.plot_parallel_coordinate(study, **kw), 11, 4)},
        {"sid": "contour", "title": "Dev error over the two most important parameters" + (
            f" ({top2[0]}, {top2[1]})" if top2 else ""),
         "why": "Optuna's contour of dev error, interpolated between the complete trials (the dots).",
         "missing": f"A contour of the two most important parameters {few}" if not imp
         else "The study searches fewer than two parameters.", "ok": bool(top2),
         "fig": lambda: figures.contour(study, top2, target),
         "png": png(lambda: ovm.plot_contour(study, params=top2, **kw), 7, 5)},
        {"sid": "timeline", "title": "Timeline of the trials",
         "why": "When each trial ran, one lane per worker (host:process), its colour its state.",
         "missing": "No trial has started yet.", "ok": any(r.get("start") for r in g["records"]),
         "fig": lambda: figures.timeline(g["records"]),
         "png": png(lambda: ovm.plot_timeline(study), 10, 3.6)},
        {"sid": "curves", "title": f"Learning curves of the top {len(board)} trials" if board
         else "Learning curves of the top trials",
         "why": "Train (dotted) and dev error after each epoch, both measured the same way: with the epoch's weights, "
                "in eval mode (no dropout), the train error on a fixed sample of the training split as large as "
                "the dev split (the running average over the epoch where a trial says 'running', --fast-curves); "
                "the grey line marks the epoch whose weights were kept.",
         "missing": "No complete trial with a recorded curve yet.", "ok": bool(board),
         "fig": lambda: figures.curves(board, unit), "png": lambda: pngs.curves_png(board, unit)},
    ]


def figures_of(g: dict[str, Any]) -> dict[str, Any]:
    """The report's plotly figures by section id (None: nothing to draw), for tests and the page."""
    return {f["sid"]: f["fig"]() if f["ok"] else None for f in plan(g)}


def render(g: dict[str, Any], static: bool = False) -> str:
    """The whole report as one HTML string, drawn from what `gather` collected (nothing is read here
    but the optuna.Study that Optuna's own plots take). Interactive unless `static`."""
    from tunectl import figures, pngs

    s = g["summary"]
    unit = "RMSE" if s.get("task") == "regression" else "error rate"
    n_complete = s["states"]["COMPLETE"]
    sections = []
    for f in plan(g):
        if static:
            draw = (lambda f=f: _img(f["png"](), f["title"]))
        else:
            draw = (lambda f=f: _plotly_div(f["fig"](), f["sid"]))
        try:
            sections.append(_figure(f["sid"], f["title"], f["why"], draw if f["ok"] else None, f["missing"],
                                    f.get("after", "")))
        except (ValueError, RuntimeError, TypeError) as err:  # one figure Optuna cannot draw: the rest still render
            sections.append(_section(f["sid"], f["title"], _note(f"This figure could not be drawn: {err}")))
    if static:
        bar = lambda t, d, h: _img(pngs.diagnosis_png(t, d, h, unit), "bias and variance")  # noqa: E731
    else:
        bar = lambda t, d, h: _plotly_div(figures.diagnosis(t, d, h, unit), "diagnosis")  # noqa: E731
    parts = [_glance(s, g["records"]), _leaderboard(s, g["verdicts"], g["records"]), _best(s), *sections,
             _diagnosis(s, g["diagnosis"], g["diagnosis_missing"], unit, bar),
             _evaluations(g["evaluations"], g["evaluations_problem"]), _environment(g.get("runs") or [])]
    if n_complete == 0:
        parts.insert(0, _note(f"This study has no complete trial yet ({s['n_trials']} trials: pruned "
                              f"{s['states']['PRUNED']}, failed {s['states']['FAIL']}); most sections are empty. "
                              f"Rerun the `tunectl tune` command that started it to resume it.", "warn"))
    elif n_complete == 1:
        parts.insert(0, _note("This study has a single complete trial: there is nothing to compare it with yet, "
                              "and importances need at least 5."))
    stamp = time.strftime("%Y-%m-%d %H:%M")
    script = ""
    if not static:  # plotly.js once, inline: the page needs no network
        from plotly.offline import get_plotlyjs

        script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    mode = "static figures" if static else "interactive figures: hover for values, drag to zoom, double-click to reset"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>tunectl report: {e(s['study'])}</title>"
            # an empty icon: browsers would otherwise ask for /favicon.ico, a failed request
            f'<link rel="icon" href="data:,"><style>{CSS}</style>{script}</head>'
            f"<body><main><h1>Study {e(s['study'])}</h1>"
            f'<p class="sub">tunectl morning report, written {e(stamp)}; errors are {e(unit)}s on the dev split '
            f"unless marked test; {e(mode)}.</p>{''.join(parts)}</main></body></html>\n")


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
    from tunectl.results import ATTR, importance_method, importances, open_study, runs, summarize, trial_records

    folder = studies.study_dir(name, Path(root))
    study = open_study(name, storage, root)
    summary = summarize(study, storage or studies.default_storage_url(name, Path(root)), folder=folder)
    records = trial_records(study, folder)
    best = summary["best"]["number"] if summary["best"] else None
    meta = study.user_attrs.get(ATTR, {})
    diagnosis, missing = _diagnose_best(next((r for r in records if r["number"] == best), None), meta, name)
    evaluations, problem = load_evaluations(folder, study)
    imp = importances(study)  # quiet: Optuna's notes on few trials per regime are silenced there
    return {"summary": summary, "study": study, "importances": imp, "importance_method": importance_method(),
            "records": records,
            "verdicts": study_verdicts(summary["leaderboard"], meta),  # the column `tunectl show` prints
            "diagnosis": diagnosis, "diagnosis_missing": missing, "evaluations": evaluations,
            "evaluations_problem": problem, "runs": runs(study)}


def report_study(name: str, storage: str | None = None, root: Path | str = studies.ROOT,
                 out: Path | str | None = None, static: bool = False) -> Path:
    """`tunectl report`: gather, render, write atomically (studies/<study>/report.html by default)."""
    from tunectl.diagnose import check_out_file

    if out is not None:  # a folder (or a path under a file) is bad input: refused before the study is read
        check_out_file(out, "--out", "report.html")
    text = render(gather(name, storage, root), static)
    path = Path(out) if out else studies.study_dir(name, Path(root)) / "report.html"
    check_out_file(path, "--out", "report.html")
    return write_report(path, text)
