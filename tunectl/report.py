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


class DecodeDisplay:
    """Decoding a folder into the cache: a bar with images per second and the time left, then one line.

    Nothing is drawn when the cache already holds the folder (no progress is reported)."""

    def __init__(self, console: Console, what: str = "decoding images into the cache"):
        from rich.progress import TimeRemainingColumn

        self.console, self.what = console, what
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console, transient=True,
        )
        self.task = None
        self.start = 0.0

    def __enter__(self) -> "DecodeDisplay":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def update(self, done: int, total: int) -> None:
        import time

        if self.task is None:
            self.start = time.perf_counter()
            self.task = self.progress.add_task(self.what, total=total, rate="")
            self.progress.start()
        seconds = max(time.perf_counter() - self.start, 1e-9)
        rate = f"{done / seconds:,.0f} images/s" if done > 1 else ""
        self.progress.update(self.task, completed=done, total=total, rate=rate)
        if done >= total:
            self.progress.stop()
            self.console.print(f"[dim]decoded {total:,} images in {seconds:.1f} s ({total / seconds:,.0f} images/s) "
                               f"into the cache; the next command maps them[/]")


def cache_table(console: Console, listing: dict[str, Any]) -> None:
    """`tunectl cache list`: one row per entry (its folder, images, shape, size, whether it is current)."""
    entries = listing["entries"]
    if not entries:
        console.print(f"The cache in {listing['cache']} is empty.")
        return
    t = Table(title=f"Decode cache: {listing['cache']}", title_justify="left")
    for col in ("key", "source folder", "images", "shape", "size", "created", "state"):
        t.add_column(col, justify="right" if col in ("images", "size") else "left",
                     overflow="fold" if col == "source folder" else "ellipsis", no_wrap=col != "source folder")
    for e in entries:
        if e["partial"]:
            t.add_row(e["key"][:8], "-", "-", "-", mib(e["bytes"]), "-", "[red]partial[/]")
            continue
        state = {True: "[green]current[/]", False: "[yellow]stale[/]", None: "[yellow]gone[/]"}
        shape = "x".join(map(str, e["shape"][1:])) if e.get("shape") else "-"
        t.add_row(e["key"][:8], str(e.get("source") or "-"), f"{e.get('n') or 0:,}", shape, mib(e["bytes"]),
                  str(e.get("created") or "-"), state[e["current"]])
    console.print(t)
    console.print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {mib(listing['bytes'])} in all "
                  f"(stale: the folder changed since; gone: the folder is gone; partial: a killed build's leftover). "
                  f"`tunectl cache clear --stale` removes all but the current ones.")


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def train_summary(console: Console, result: dict[str, Any], task: str) -> None:
    unit = "RMSE" if task == "regression" else "error rate"
    t = Table(title=f"Run summary ({unit})", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    rows = [
        ("status", result["status"]),
        ("best epoch", f"{result['best_epoch']} of {result['epochs']}"),
        ("train error", fmt(result["train_error"]) + (f"  (eval mode, {result['train_sample']:,} training examples)"
                                                     if result.get("train_sample") else "")),
        ("dev error", fmt(result["dev_error"])),
        ("batch size used", result.get("batch_size_used", "-")),
        ("seconds / epoch", fmt(result["epoch_seconds"], 3)),
        ("saved to", result.get("out") or "-"),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)


def spaces_table(console: Console, rows: list[dict[str, Any]]) -> None:
    t = Table(title="Search spaces (tunectl tune --space NAME)", title_justify="left")
    t.add_column("name", style="bold", no_wrap=True)
    t.add_column("model")
    t.add_column("data set")
    t.add_column("what it is for")
    for r in rows:
        t.add_row(r["name"], str(r["model"] or "-"), str(r["dataset"] or "-"), r["about"])
    console.print(t)


def datasets_table(console: Console, rows: list[tuple[str, str]]) -> None:
    t = Table(title="Data sets", title_justify="left")
    t.add_column("name", style="bold")
    t.add_column("source")
    for name, where in rows:
        t.add_row(name, where)
    console.print(t)


def dataset_summary(console: Console, info: dict[str, Any]) -> None:
    """`tunectl datasets --dataset X`: what was inferred (a table's columns by type), task, split."""
    for line in info.get("lines") or []:
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    record = info.get("preprocessing")
    if record:
        t = Table(title="Columns (learned from the training split)", title_justify="left")
        for c in ("column", "type", "how", "missing", "median / categories"):
            t.add_column(c)
        for col in record["columns"]:
            stat = (f"{col['median']:.6g}" + (" (+ indicator)" if col["indicator"] else "")
                    if col["type"] == "numeric" else ", ".join(col["categories"][:8])
                    + (", ..." if len(col["categories"]) > 8 else ""))
            t.add_row(col["name"], col["type"], col["how"], str(col.get("missing", 0)), stat)
        console.print(t)
    sizes = info["sizes"]
    labels = info.get("labels") or []
    what = f"{info['task']}" + (f" ({len(labels)} classes: {', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})"
                                if labels else "")
    console.print(f"{info['dataset']}: {what}; inputs {' x '.join(map(str, info['input_shape']))}; split "
                  f"{sizes['train']}/{sizes['dev']}/{sizes['test']} (train/dev/test, seed {info['split_seed']})",
                  soft_wrap=True, markup=False, highlight=False)


def prediction_summary(console: Console, r: dict[str, Any]) -> None:
    """`tunectl predict --out FILE`: where the predictions went, and the first few."""
    console.print(f"{r['n']} predictions by {r['model']} written to {r['out']}", soft_wrap=True, markup=False)
    t = Table(title=f"first rows of {r['out']}", title_justify="left")
    for c in r["columns"]:
        t.add_column(c)
    for row in r["predictions"][:5]:
        t.add_row(*(fmt(row[c]) if isinstance(row[c], float) else str(row[c]) for c in r["columns"]))
    console.print(t)


# ----------------------------------------------------------------------------- studies


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class TuneDisplay:
    """Live study progress: trials done / pruned / failed, best dev error, elapsed and remaining."""

    def __init__(self, console: Console, study: str, target: int | None):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), console=console, transient=False,
        )
        self.task = self.progress.add_task(study, total=target, status="starting")

    def __enter__(self) -> "TuneDisplay":
        # the bar starts with the first update, once the study is ready: a refusal before
        # that (bad space, data, storage) stays the one line of its error
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress.live.is_started:  # stopping a display never started prints an empty line
            self.progress.stop()

    def update(self, p: dict[str, Any]) -> None:
        self.progress.start()  # no-op once started
        st = p["states"]
        status = (
            f"complete {st['COMPLETE']}  pruned {st['PRUNED']}  failed {st['FAIL']}  running {st['RUNNING']}  "
            f"best dev {fmt(p['best'])}  elapsed {duration(p['elapsed'])}"
            + (f"  left {duration(p['remaining'])}" if p.get("remaining") is not None else "")
        )
        self.progress.update(self.task, completed=p["done"], status=status)


def fmt_se(v: Any, se: Any, digits: int = 4) -> str:
    """An error with its standard error (noise.py), e.g. 0.0312 ± 0.0091."""
    return fmt(v, digits) + (f" ± {fmt(se, digits)}" if isinstance(se, (int, float)) and math.isfinite(se) else "")


def _params_text(params: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={fmt(v, 4) if isinstance(v, float) else v}" for k, v in (params or {}).items())


def leaderboard(console: Console, summary: dict[str, Any], importances: dict[str, float] | None = None,
                verdicts: dict[int, str] | None = None) -> None:
    """`tunectl show`: counts by state, epochs saved, the leaderboard, the best trial, importances."""
    st = summary["states"]
    console.print(
        f"[bold]{summary['study']}[/]  data {summary.get('dataset') or '-'}  trials {summary['n_trials']}: "
        f"complete {st['COMPLETE']}, pruned {st['PRUNED']}, failed {st['FAIL']}, running {st['RUNNING']}"
    )
    if summary.get("max_epochs"):
        console.print(
            f"epochs trained {summary['epochs_used']}; pruning saved {summary['epochs_saved']} "
            f"(a trial may run {summary['max_epochs']})"
        )
    board = summary.get("leaderboard") or []
    if not board:
        console.print("[yellow]No complete trial yet.[/]")
        return
    t = Table(title="Leaderboard (dev error ± its standard error, lower is better)", title_justify="left")
    rechecked = any((r.get("recheck") or {}).get("mean") is not None for r in board)
    rows = []
    for i, r in enumerate(board, 1):
        trial = f"{r['number']}{'*' if r.get('enqueued') else ''}"
        row = [str(i), trial, fmt_se(r["dev_error"], r.get("dev_error_se")), "≈ best" if r.get("within_noise") else ""]
        if rechecked:  # `tunectl recheck`: the mean over new seeds ± their spread
            rc = r.get("recheck") or {}
            row.append(fmt_se(rc["mean"], rc.get("std")) if rc.get("mean") is not None else "")
        row += [fmt(r["train_error"]), str(r["epochs"])]
        if verdicts:
            row.append(verdicts.get(r["number"], "-"))
        rows.append([*row, _params_text(r["params"])])
    near = any(r.get("within_noise") for r in board)  # the "noise" column only when a trial is ≈ best
    if not near:
        for row in rows:
            del row[3]
    heads = ["#", "trial", "dev error", *(["noise"] if near else []), *(["new seeds"] if rechecked else []),
             "train error", "epochs", *(["diagnosis"] if verdicts else []), "params"]
    # the parameters wrap between two `name=value,` items, never inside one: where the terminal is
    # too narrow for that, the two-word headers take two lines first (rich would fold a value)
    widths = [max(len(h), *(len(row[c]) for row in rows)) for c, h in enumerate(heads[:-1])]
    longest = max(len(item) for row in rows for item in row[-1].split(" "))
    narrow = sum(widths) + longest + 3 * len(heads) + 1 > console.width
    if narrow:
        heads = [h.replace(" ", "\n") for h in heads]
    for c, h in enumerate(heads[:-1]):
        # narrow: an error ± its standard error takes two lines ("0.0149 ±" over "0.0064"), and its column
        # only that width (rich keeps such a column as wide as its one-line cells, and then cuts the table)
        two_lines = narrow and any(" ± " in row[c] for row in rows)
        t.add_column(h, overflow="fold", max_width=max(len(row[c].split(" ± ")[0]) + 2 for row in rows)
                     if two_lines else None)
    # the others give way first; where even their narrowest (each one's longest word) leaves the parameters
    # too little room, a value folds rather than the table being cut at the terminal's edge
    narrowest = sum(max(len(w) for text in (h, *(row[c] for row in rows)) for w in text.split() or [""])
                    for c, h in enumerate(heads[:-1]))
    fits = narrowest + longest + 3 * len(heads) + 1 <= console.width
    t.add_column(heads[-1], overflow="fold", min_width=longest if fits else None)
    for row in rows:
        t.add_row(*row)
    console.print(t)
    near = sum(bool(r.get("within_noise")) for r in board)
    if near:
        console.print(f"[dim]≈ best: {near} trial{'s' * (near != 1)} less than two standard errors (of the difference) "
                      f"above the best: the dev set does not tell {'them' if near > 1 else 'it'} apart from it; "
                      f"`tunectl recheck {summary['study']}` re-trains the top trials with new seeds.[/]")
    if any(r.get("enqueued") for r in board):
        console.print("[dim]* enqueued: tried first (the textbook defaults, --enqueue or --warm-from).[/]")
    b = summary["best"]
    if b.get("rechecked"):
        rc = b["rechecked"]
        console.print(f"[bold]Rechecked winner[/]: trial {b['number']}, mean dev error {fmt_se(rc['mean'], rc.get('std'))} "
                      f"(± the spread) over {rc['n']} new seeds; show, export and evaluate use it.")
    console.print(f"[bold green]Best trial {b['number']}[/]: dev error {fmt_se(b['dev_error'], b.get('dev_error_se'))}, train error "
                  f"{fmt(b['train_error'])}, best epoch {b.get('best_epoch')}; {_params_text(b['params'])}")
    if importances:
        method = summary.get("importance_method") or {}  # results.importance_method(): the evaluator and its meaning
        it = Table(title=f"Parameter importances ({method.get('method', 'Optuna')})", title_justify="left")
        it.add_column("param")
        it.add_column("importance")
        it.add_column("")
        for k, v in importances.items():
            it.add_row(k, f"{v:.3f}", "█" * max(1, round(v * 30)))
        console.print(it)
        if method.get("why"):
            console.print(f"[dim]{method['why']}.[/]")


def studies_table(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("No studies yet: start one with `tunectl tune`.")
        return
    t = Table(title="Studies", title_justify="left")
    # the study name is what the user types next: never cut it, let the other columns give way
    t.add_column("study", no_wrap=True, min_width=max(len(r["study"]) for r in rows))
    for col in ("data set", "complete", "pruned", "failed", "running", "best dev error", "last activity"):
        t.add_column(col)
    for r in rows:
        if r.get("unreadable"):
            t.add_row(r["study"], "[red]unreadable[/]", "-", "-", "-", "-", "-", "-")
            continue
        s = r["states"]
        t.add_row(r["study"], r.get("dataset") or "-", str(s["COMPLETE"]), str(s["PRUNED"]), str(s["FAIL"]),
                  str(s["RUNNING"]), fmt(r["best_dev_error"]), (r.get("last_activity") or "-")[:19])
    console.print(t)
    for r in rows:
        if r.get("unreadable"):
            console.print(f"[red]{r['study']}: unreadable: {r['unreadable']}[/]", soft_wrap=True)


# ----------------------------------------------------------------------------- diagnose

VERDICT_STYLE = {"high_bias": ("high bias", "red"), "high_variance": ("high variance", "yellow"),
                 "high_bias_high_variance": ("high bias and high variance", "red"), "ok": ("ok", "green")}
VERDICT_SHORT = {"high_bias": "bias", "high_variance": "variance", "high_bias_high_variance": "bias+var", "ok": "ok"}


def verdict_label(verdict: str | None) -> str:
    """A verdict as the reader sees it: 'high bias and high variance', not 'high_bias_high_variance'."""
    return VERDICT_STYLE.get(str(verdict), (str(verdict or "-").replace("_", " "), ""))[0]
SPARK = "▁▂▃▄▅▆▇█"


def _sparkline(values: list[Any], low: float, high: float, width: int = 40) -> str:
    """One character per epoch (sampled down to `width`), on a scale shared by train and dev."""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    span = (high - low) or 1.0
    return "".join(" " if not isinstance(v, (int, float)) or not math.isfinite(v)
                   else SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1) + 0.5))] for v in values)


def _bar(value: float, threshold: float, scale: float, width: int = 20) -> str:
    n = max(0, min(width, round(max(value, 0.0) / scale * width))) if scale > 0 else 0
    colour = "red" if value > threshold else "green"
    return f"[{colour}]{'█' * n}[/][dim]{'░' * (width - n)}[/]"


def _listing(items: list[tuple[str, str]]) -> Table:
    """Bullets whose wrapped lines stay indented under their text."""
    t = Table.grid(padding=(0, 1))
    t.add_column(justify="right", no_wrap=True)
    t.add_column()
    for mark, text in items:
        t.add_row(f"  {mark}", text)
    return t


def diagnosis_panel(console: Console, d: dict[str, Any]) -> None:
    """`tunectl diagnose`: the four numbers, bars for bias and variance, the verdict, the curves, the actions."""
    from rich.console import Group
    from rich.panel import Panel

    label, colour = VERDICT_STYLE.get(d["diagnosis"], (d["diagnosis"], "white"))
    th = d.get("thresholds", {})
    numbers = Table(show_header=False, box=None, pad_edge=False)
    for _ in range(3):
        numbers.add_column()
    numbers.add_row("train error", fmt_se(d["train_error"], d.get("train_error_se")), "")
    numbers.add_row("dev error", fmt_se(d["dev_error"], d.get("dev_error_se")), "")
    numbers.add_row("human-level error", fmt(d["human_error"]), "")
    scale = max(abs(d["avoidable_bias"]), abs(d["variance"]), 2 * th.get("bias", 0), 2 * th.get("variance", 0))
    numbers.add_row("[bold]avoidable bias[/] (train − human)", fmt(d["avoidable_bias"]),
                    f"{_bar(d['avoidable_bias'], th.get('bias', 0), scale)} limit {fmt(th.get('bias'))}")
    numbers.add_row("[bold]variance[/] (dev − train)", fmt_se(d["variance"], d.get("variance_se")),
                    f"{_bar(d['variance'], th.get('variance', 0), scale)} limit {fmt(th.get('variance'))}")
    parts: list[Any] = [numbers, f"\n[bold]verdict:[/] [bold {colour}]{label}[/]"]
    curve = d.get("curve") or []
    if curve:
        tr, dv = [r.get("train_error") for r in curve], [r.get("dev_error") for r in curve]
        finite = [v for v in tr + dv if isinstance(v, (int, float)) and math.isfinite(v)]
        if finite:
            lo, hi = min(finite), max(finite)
            last = curve[-1]
            parts.append(f"\n[bold]curve[/] over {len(curve)} epochs (error, shared scale {fmt(lo)}–{fmt(hi)})")
            parts.append(f"  train {_sparkline(tr, lo, hi)}  {fmt(tr[0])} → {fmt(last.get('train_error'))}")
            parts.append(f"  dev   {_sparkline(dv, lo, hi)}  {fmt(dv[0])} → {fmt(last.get('dev_error'))}")
    if d.get("data_curve"):
        t = Table(box=None)
        for col in ("share", "examples", "train error", "dev error"):
            t.add_column(col, justify="right")
        for p in d["data_curve"]:
            t.add_row(f"{p['fraction']:.0%}", str(p["n_train"]), fmt(p["train_error"]), fmt(p["dev_error"]))
        parts += ["\n[bold]data curve[/]: the same configuration on growing shares of the training split", t]
    if d.get("evidence"):
        parts += ["\n[bold]evidence[/]", _listing([("•", e["text"]) for e in d["evidence"]])]
    parts += ["\n[bold]actions[/]", _listing([(f"{i}.", a["text"]) for i, a in enumerate(d.get("actions") or [], 1)])]
    src = d.get("source", {})
    title = (f"diagnosis: study {src['study']}, trial {src['trial']}" if src.get("study")
             else f"diagnosis: run {src.get('run', '')}")
    console.print(Panel(Group(*parts), title=title, title_align="left", border_style=colour))


def diagnosis_overview(console: Console, d: dict[str, Any]) -> None:
    """`tunectl diagnose STUDY --all`: how many trials are bias- or variance-limited, and which."""
    n = d["n_complete"]
    console.print(f"[bold]{d['study']}[/]: {n} complete trials; bias-limited {d['bias_limited']}, "
                  f"variance-limited {d['variance_limited']} (thresholds: bias {fmt(d['thresholds']['bias'])}, "
                  f"variance {fmt(d['thresholds']['variance'])}; human error {fmt(d['human_error'])})")
    t = Table(title="Trials by verdict (best dev error first)", title_justify="left")
    for col in ("trial", "dev error", "train error", "avoidable bias", "variance", "diagnosis"):
        t.add_column(col)
    for r in d["trials"]:
        label, colour = VERDICT_STYLE.get(r["diagnosis"], (r["diagnosis"], "white"))
        t.add_row(str(r["number"]), fmt(r["dev_error"]), fmt(r["train_error"]), fmt(r["avoidable_bias"]),
                  fmt(r["variance"]), f"[{colour}]{label}[/]")
    console.print(t)
    counts = ", ".join(f"{VERDICT_STYLE[k][0]} {v}" for k, v in d["counts"].items())
    console.print(f"counts: {counts}")


# ----------------------------------------------------------------------------- evaluate and export


def evaluation(console: Console, r: dict[str, Any]) -> None:
    """`tunectl evaluate`: test, dev and train error side by side, the examples behind each, the record."""
    unit = "RMSE" if r["task"] == "regression" else "error rate"
    title = f"study {r['study']}, trial {r['trial']}" + (" (refit on train+dev)" if r["refit"] else "")
    table = Table(title=title, title_justify="left")
    a = r.get("attack")
    for name in ("test", *(["test"] if a else []), "dev", "train"):
        table.add_column(f"{name} {unit}", justify="right")
    if a:
        table.columns[1].header = f"test {unit} under {a['name'].upper()}"
    dev = fmt_se(r["dev_error"], r.get("dev_error_se")) if not r["refit"] else "trained on"
    table.add_row(fmt_se(r["test_error"], r.get("test_error_se")),
                  *([fmt_se(a["test_error"], a.get("test_error_se"))] if a else []), dev,
                  fmt_se(r["train_error"], r.get("train_error_se")))
    sizes = {**r["sizes"], "train": r["sizes"]["train"] + (r["sizes"]["dev"] if r["refit"] else 0)}
    table.add_row(*(f"[dim]{sizes[k]} examples[/]" for k in ("test", *(["test"] if a else []), "dev", "train")))
    console.print(table)
    if a:
        console.print(f"Under attack: {attack_text(a)}.", soft_wrap=True)
    if r.get("test_error_se") is not None:
        console.print("[dim]± is the standard error (binomial for an error rate, bootstrapped over the examples for "
                      "an RMSE): the test error is an estimate too.[/]")
    if r.get("picked_by") == "recheck":
        console.print(f"[dim]Trial {r['trial']} is the rechecked winner (the lowest mean dev error over new seeds).[/]")
    if r["refit"]:
        console.print(f"Refit on train+dev for {r['epochs']} epochs (the trial's best epoch count): train error is "
                      f"on train+dev; dev was trained on, so it has no held-out error.")
        console.print(f"Model: {r['model']}", soft_wrap=True)
    console.print(f"[dim]Look {r['evaluations']} at the test set, recorded in the study and in {r['record']}.[/]",
                  soft_wrap=True)
    if r["evaluated_before"]:
        console.print(f"[yellow]Warning: {r['warning']}.[/]", soft_wrap=True)


def attack_text(a: dict[str, Any]) -> str:
    """'FGSM, eps 0.1 (standardized; 0.0367 in the input's units)': an attack and its budget, in words."""
    units = a.get("eps_input")
    if isinstance(units, dict):
        units = f"{fmt(units['min'])}–{fmt(units['max'])} in the input's units, by feature"
    elif units is not None:
        units = f"{fmt(units)} in the input's units"
    steps = f", {a['steps']} steps" if a.get("steps") else ""
    return f"{a['name'].upper()}{steps}, eps {a['eps']:g} (standard deviations{'; ' + units if units else ''})"


def export_summary(console: Console, r: dict[str, Any]) -> None:
    console.print(f"Exported trial {r['trial']} of {r['study']} (dev error {fmt(r['dev_error'])}) to {r['out']}/: "
                  f"{', '.join(r['files'])}", soft_wrap=True)
    if r.get("picked_by") == "recheck":
        console.print(f"Trial {r['trial']} is the rechecked winner (the lowest mean dev error over new seeds).")
    console.print(f"Reproduce it with: [bold]{r['command']}[/]", soft_wrap=True)


def recheck_line(console: Console, x: dict[str, Any]) -> None:
    """`tunectl recheck` progress: one line per seed trained (or found done)."""
    console.print(f"[dim]  trial {x['trial']}, seed {x['seed']}: dev error {fmt(x['dev_error'])}[/]")


def recheck_table(console: Console, r: dict[str, Any]) -> None:
    """`tunectl recheck`: the rechecked trials by mean dev error over new seeds, and the winner."""
    t = Table(title=f"{r['study']}: the top trials re-trained with {r['seeds_per_trial']} new seeds (same split), "
                    f"by mean dev error", title_justify="left")
    for col in ("#", "trial", "mean ± spread", "each seed", "its own run", "params"):
        t.add_column(col, overflow="fold")
    for i, x in enumerate(r["trials"], 1):
        each = ", ".join(fmt(s.get("dev_error")) for s in x["seeds"])
        t.add_row(str(i), str(x["number"]), fmt_se(x["mean"], x.get("std")), each,
                  fmt_se(x["original_dev_error"], x.get("original_dev_error_se")), _params_text(x["params"]))
    console.print(t)
    console.print("[dim]mean over the new seeds only (the trial's own run was picked for being low, so it is biased "
                  "low); spread: their sample standard deviation.[/]")
    if r["winner"] is None:
        return
    if r["changed"]:
        console.print(f"[bold yellow]The ranking changed[/]: trial {r['winner']} wins over new seeds; trial "
                      f"{r['original_best']} led on its one run. show, export and evaluate now use trial {r['winner']}.")
    else:
        console.print(f"[bold green]Trial {r['winner']} holds[/]: it leads over new seeds too; show, export and "
                      f"evaluate use it.")


def lr_find_summary(console: Console, r: dict[str, Any]) -> None:
    """`tunectl lr-find`: the smoothed loss against lr, one decade per column group, and the suggestion."""
    rows = r["curve"]
    losses = [x["smoothed"] for x in rows]
    lo, hi = min(losses), max(losses)
    console.print(f"[bold]learning-rate range test[/]: {r['model']} on {r.get('dataset') or '-'}, {r['optimizer']}, "
                  f"batch {r['batch_size']}, {r['steps']} mini-batches from lr {r['start']:g} "
                  f"({'stopped: the loss blew up' if r['stopped'] == 'blew_up' else 'to ' + format(r['end'], 'g')})")
    console.print(f"  loss {_sparkline(losses, lo, hi, width=60)}  {fmt(losses[0])} → min {fmt(r['min_loss'])}")
    console.print(f"  lr   {rows[0]['lr']:<10.1e}{' ' * 40}{rows[-1]['lr']:>10.1e}")
    a, b = r["range"]
    console.print(f"lowest smoothed loss at lr {r['lr_at_min']:.3g}; [bold green]search lr {a:.3g}–{b:.3g}[/] "
                  f"(log), one decade below it (suggested: {r['suggested']:.3g})")
    if r.get("min_at_end"):
        console.print("[yellow]The loss was still falling at the last lr: raise --end to see where it turns.[/]")
    if r.get("plot"):
        console.print(f"curve: {r['plot']}", soft_wrap=True)
    if r.get("next_space"):
        console.print(f"Next search space written to {r['next_space']}; run it with "
                      f"[bold]tunectl tune --space {r['next_space']} --study NEW_NAME[/]", soft_wrap=True)


def curve_point(console: Console, p: dict[str, Any] | None) -> None:
    """`diagnose --data-curve` progress: the announcement (None), then one line per point."""
    if p is None:
        console.print("[dim]data curve: retraining the configuration on growing shares of the training split[/]")
    else:
        console.print(f"[dim]  {p['fraction']:>4.0%} ({p['n_train']} examples): train error "
                      f"{fmt(p['train_error'])}, dev error {fmt(p['dev_error'])}[/]")
