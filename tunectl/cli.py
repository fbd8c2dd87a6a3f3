"""The Typer app: parse, call one core function, render. The one place errors become exit codes.

Heavy imports (torch, optuna) live inside the command bodies so that `tunectl --help`
answers at once. Results go to stdout (or JSON with --json); progress and errors to stderr.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer
from typer.core import TyperGroup

EXIT_RUNTIME, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
MAX_LINE = 400  # an error line quotes user input; a huge input must not become a huge line


def one_line(message: str) -> str:
    # a message quoting the user's input (a YAML key, a file name) may hold a line break: show it escaped
    message = str(message).replace("\r", "\\r").replace("\n", "\\n")
    return message if len(message) <= MAX_LINE else message[: MAX_LINE - 3] + "..."


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """One line on stderr and a non-zero exit: never a traceback."""
    typer.secho(f"error: {one_line(message)}", fg="red", err=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    """A one-line note on stderr, shown with --json too (stdout stays machine-readable)."""
    typer.secho(f"note: {one_line(message)}", fg="yellow", err=True)


def usage_error(e: Exception) -> str:
    """A click usage error (bad option value, unknown option, missing argument) as one line."""
    ctx, param = getattr(e, "ctx", None), getattr(e, "param", None)
    where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
    if param is not None:
        name = (getattr(param, "opts", None) or [param.name])[0]
        cause = getattr(e.__cause__, "errors", None)  # typer validates values with pydantic
        first = cause()[0] if callable(cause) else {}
        kind = {"int_parsing": "is not a whole number", "int_from_float": "is not a whole number",
                "float_parsing": "is not a number", "bool_parsing": "is not true or false"}.get(first.get("type"))
        if kind and "input" in first:
            return f"{name}: {first['input']!r} {kind}{where}"
    text = " ".join(e.format_message().split()).rstrip(".")
    if param is not None and name not in text:
        text = f"{name}: {text}"
    return f"{text}{where}"


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Python's and torch's warnings (a file, a line number, the source line) become one
    `warning:` line each, printed once, through the same path as every other message."""
    import warnings

    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = one_line(" ".join(str(message).split()))
        if text not in seen:
            seen.add(text)
            typer.secho(f"warning: {text}", fg="yellow", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


class OneLineGroup(TyperGroup):
    """Typer's group, with click's usage errors (a six-line box) printed as one line, exit 2."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            with one_line_warnings():
                rv = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            typer.secho("error: interrupted", fg="red", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as e:  # noqa: BLE001 - click's exceptions are Typer-private: known by their shape
            if not hasattr(e, "format_message") or not hasattr(e, "exit_code"):
                raise
            typer.secho(f"error: {one_line(usage_error(e))}", fg="red", err=True)
            sys.exit(e.exit_code if e.exit_code else EXIT_BAD_INPUT)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=OneLineGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tune deep-learning hyperparameters the way a practitioner does by hand, overnight and at scale.",
)


@contextmanager
def handled() -> Iterator[None]:
    from tunectl.errors import RunError, TunectlError

    try:
        yield
    except TunectlError as e:
        fail(str(e), EXIT_BAD_INPUT)
    except RunError as e:
        fail(str(e), EXIT_RUNTIME)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except MemoryError:
        fail("out of memory; use a smaller batch_size or model", EXIT_RUNTIME)
    except OSError as e:
        fail(f"{e.strerror or e} ({e.filename or ''}); check the path, its permissions and free disk space", EXIT_RUNTIME)
    except Exception as e:  # noqa: BLE001 - a storage server lost mid-run: one masked line, not a traceback
        if not type(e).__module__.startswith(("sqlalchemy", "psycopg", "optuna.exceptions")):
            raise
        import re

        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        first = re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", first)  # never print a password
        fail(f"the study storage failed: {first[:300]}; check that the database server is up, then resume", EXIT_RUNTIME)


def consoles(json_out: bool):
    """stdout for results, stderr for progress; rich only at this edge."""
    from rich.console import Console

    return Console(), Console(stderr=True, quiet=json_out)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


# ----------------------------------------------------------------------------- shared options

DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", "-d", help="digits, mnist, csv:PATH, ... (see `tunectl datasets`)")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="where torchvision data sets live")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="download a torchvision data set if absent")]
TargetOpt = Annotated[Optional[str], typer.Option("--target", help="csv: the column to predict")]
TaskOpt = Annotated[Optional[str], typer.Option("--task", help="force binary | multiclass | regression")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="train,dev,test fractions, e.g. 0.8,0.1,0.1")]
ImageSizeOpt = Annotated[Optional[int], typer.Option("--image-size", help="folder: resize images to N x N")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout, nothing else")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, mps (default: the best present)")]


def data_settings(dataset, data_dir, target, task, split, image_size, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """CLI flags over a params file's `data:` section over the defaults."""
    d = {"dataset": "digits", "data_dir": "data", "split_seed": 0, **(base or {})}
    for key, value in (("dataset", dataset), ("data_dir", data_dir), ("target", target), ("task", task),
                       ("split", split), ("image_size", image_size)):
        if value is not None:
            d[key] = str(value) if isinstance(value, Path) else value
    return d


def spec_from(d: dict[str, Any], download: bool = False):
    from tunectl.data import DataSpec

    return DataSpec(d["dataset"], str(d.get("data_dir", "data")), download, d.get("target"), d.get("task"),
                    d.get("image_size"))


def ratios_from(d: dict[str, Any]):
    from tunectl.data import parse_split

    split = d.get("split")
    if split is None:
        return None
    return parse_split(split if isinstance(split, str) else ",".join(str(s) for s in split))


# ----------------------------------------------------------------------------- commands


@app.command()
def datasets(json_out: JsonOpt = False) -> None:
    """List the data sets and where they come from."""
    from tunectl.data import describe
    from tunectl.report import datasets_table

    rows = describe()
    if json_out:
        return print_json([{"name": n, "source": s} for n, s in rows])
    datasets_table(consoles(False)[0], rows)


@app.command()
def train(
    dataset: DatasetOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="mlp | cnn | transfer")] = None,
    params: Annotated[Optional[Path], typer.Option("--params", help="params.yaml from `tunectl export` or a run's config.yaml")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="key=value, repeatable: --set lr=3e-4 --set depth=3")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="epochs to train")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="seed for weights, dropout and batch order")] = None,
    split_seed: Annotated[Optional[int], typer.Option("--split-seed", help="seed of the train/dev/test split")] = None,
    train_fraction: Annotated[float, typer.Option("--train-fraction", help="train on this seeded fraction of the training split")] = 1.0,
    init_from: Annotated[Optional[Path], typer.Option("--init-from", help="transfer: a tunectl model.pt to start from")] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="transfer: local torchvision weights for --set arch=resnet18")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="a new run folder (default: studies/runs/<dataset>-<model>-<time>)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace --out if it already holds files")] = False,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    target: TargetOpt = None,
    task: TaskOpt = None,
    split: SplitOpt = None,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train one model and babysit it: live progress, a summary, a run folder."""
    with handled():
        from tunectl import config as C
        from tunectl import studies
        from tunectl.data import load_splits
        from tunectl.models import save_checkpoint
        from tunectl.report import TrainDisplay, train_summary
        from tunectl.train import fit

        from tunectl.train import check_device

        check_device(device)  # an unknown or absent device: one line before the data load
        if out is not None:
            studies.check_new_folder(out, force)  # before the data load and the training, not after
        values, data_base = studies.read_params(params) if params else ({}, {})
        if model is not None:
            values["model"] = model
        if epochs is not None:
            values["epochs"] = epochs
        if seed is not None:
            values["seed"] = seed
        if init_from is not None or weights is not None:
            values["init_from"] = str(init_from or weights)
        values.update(C.parse_set(set_ or []))
        cfg = C.from_dict(values)
        d = data_settings(dataset, data_dir, target, task, split, image_size, data_base)
        if split_seed is not None:
            d["split_seed"] = split_seed
        if train_fraction != 1.0:
            d["train_fraction"] = train_fraction
        splits = load_splits(spec_from(d, download), ratios_from(d), int(d["split_seed"]), float(d.get("train_fraction", 1.0)))
        from tunectl.models import build_model
        from tunectl.train import batch_size_for

        # refuse bad combinations (batch too large, cnn on tabular data, transfer without a
        # source) before any display starts or any folder is made
        batch_size_for(cfg, len(splits.x_train))
        build_model(cfg, splits.input_shape, splits.out_dim)
        out_dir = Path(out) if out else studies.new_run_dir(Path("studies/runs"), d["dataset"], cfg.model)
        stdout, stderr = consoles(json_out)
        with TrainDisplay(stderr, cfg.epochs, f"{d['dataset']} {cfg.model}") as display:
            hist = fit(cfg, splits, on_epoch=display.on_epoch, on_batch=display.on_batch, device=device)
        with studies.NewFolder(out_dir, force) as run:  # the run folder appears whole, or not at all
            studies.write_text(run.path / "config.yaml", studies.params_text(cfg, d))
            studies.write_json(run.path / "history.json", {**hist.to_dict(), "task": splits.task, "config": cfg.to_dict(), "data": d})
            studies.write_json(run.path / "split.json", splits.manifest)
            if hist.model is not None:
                save_checkpoint(run.path / "model.pt", hist.checkpoint({"data": d, "manifest": splits.manifest}))
        if run.final != out_dir:
            stderr.print(f"[yellow]note: {out_dir} was made by another process meanwhile; this run is in {run.final}[/]",
                         soft_wrap=True)
        result = {**hist.to_dict(), "out": str(run.final)}
        if json_out:
            return print_json(result)
        train_summary(stdout, result, splits.task)
        if hist.status == "diverged":
            stdout.print("[yellow]The loss became NaN or infinite: lower lr (e.g. --set lr=1e-4) or check the inputs' scale.[/]")


StorageOpt = Annotated[Optional[str], typer.Option("--storage", envvar="TUNECTL_STORAGE", help="Optuna storage URL (default: studies/<study>/study.db); TUNECTL_STORAGE keeps a password out of ps")]
RootOpt = Annotated[Path, typer.Option("--root", help="folder that holds the studies", envvar="TUNECTL_STUDIES")]


@app.command()
def tune(
    space: Annotated[Optional[Path], typer.Option("--space", "-s", help="search-space YAML (see searchspaces/; default quick.yaml); "
                     "omit it to join a study that exists on --storage")] = None,
    dataset: DatasetOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="override the space's model")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="study name (default: <dataset>-<space>)")] = None,
    storage: StorageOpt = None,
    trials: Annotated[Optional[int], typer.Option("--trials", "-n", help="complete+pruned trials the study should reach")] = None,
    timeout: Annotated[Optional[str], typer.Option("--timeout", help="stop after 90s, 30m, 8h, ...")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="worker processes on this machine")] = 1,
    sampler: Annotated[Optional[str], typer.Option("--sampler", help="tpe | random | grid | cmaes | qmc (default: "
                       "tpe, or the study's own when resuming; a change is recorded in the study)")] = None,
    pruner: Annotated[Optional[str], typer.Option("--pruner", help="hyperband | halving | median | none (default: "
                      "hyperband, or the study's own when resuming)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the sampler and of every trial's training")] = 0,
    split_seed: Annotated[Optional[int], typer.Option("--split-seed", help="seed of the study's train/dev/test split (default 0)")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="override the space's epochs per trial")] = None,
    init_from: Annotated[Optional[Path], typer.Option("--init-from", help="transfer: checkpoint the body starts from")] = None,
    heartbeat: Annotated[int, typer.Option("--heartbeat", help="seconds between heartbeats; a trial silent 3x as long is retried")] = 10,
    root: RootOpt = Path("studies"),
    data_dir: DataDirOpt = None,
    target: TargetOpt = None,
    task: TaskOpt = None,
    split: SplitOpt = None,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = None,
    artifacts: Annotated[Optional[Path], typer.Option("--artifacts", help="folder for the best trials' checkpoints, shared "
                         "by all workers (default: studies/<study>/artifacts)")] = None,
    report_: Annotated[bool, typer.Option("--report", help="write the HTML morning report at the end (after "
                       "--timeout or Ctrl-C too); see `tunectl report`")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run (or resume) a study: many models side by side, the hopeless ones pruned."""
    with handled():
        import dataclasses

        from tunectl import studies
        from tunectl.report import TuneDisplay, leaderboard
        from tunectl.space import load_space
        from tunectl.tune import TuneSettings, importances, open_study, parse_timeout, run_study, settings_from_study

        if epochs is not None and epochs < 1:
            fail(f"--epochs {epochs}: must be at least 1")
        art = str(artifacts) if artifacts else None
        settings = None
        if space is None and storage and study:  # a worker joining a study on a server: the study holds its settings
            given = {k: str(v) if isinstance(v, Path) else v for k, v in (
                ("dataset", dataset), ("data_dir", data_dir), ("target", target), ("task", task), ("split", split),
                ("image_size", image_size), ("split_seed", split_seed)) if v is not None}
            settings = settings_from_study(study, storage, given, epochs, model, root=str(root), n_trials=trials,
                                           timeout=parse_timeout(timeout), jobs=jobs, heartbeat=heartbeat,
                                           device=device, artifacts=art)
        if settings is None:
            space = space or Path("searchspaces/quick.yaml")
            sp = load_space(space)
            if epochs is not None:
                sp = dataclasses.replace(sp, epochs=epochs)
            d = data_settings(dataset or sp.dataset, data_dir, target, task, split, image_size)
            d["split_seed"] = split_seed if split_seed is not None else 0
            base = {}
            if model:
                base["model"] = model
            if init_from:
                base["init_from"] = str(init_from)
            name = study if study is not None else studies.safe_name(f"{d['dataset']}-{Path(space).stem}")
            settings = TuneSettings(sp, d, name, storage, str(root), trials, parse_timeout(timeout), jobs, sampler,
                                    pruner, seed, heartbeat, base=base, device=device, artifacts=art)
        name = settings.study
        if studies.is_server(settings.storage_url):  # a dead or refusing server: one line, before any display
            studies.open_storage(settings.storage_url, None)
        stdout, stderr = consoles(json_out)
        with TuneDisplay(stderr, name, trials) as display:
            summary = run_study(settings, on_progress=display.update, on_note=note)
        report_path = None
        if report_:  # run_study returns on a timeout or Ctrl-C as well, so the night's work is reported
            from tunectl.html_report import report_study

            report_path = report_study(name, settings.storage, settings.root)
            stderr.print(f"report: {report_path}", soft_wrap=True)
        if json_out:
            print_json({**summary_json(summary), **({"report": str(report_path)} if report_path else {})})
        else:
            if summary["interrupted"]:
                stdout.print(f"[yellow]Stopped. Resume with the same command; the study is '{name}'.[/]")
            leaderboard(stdout, summary, importances(open_study(name, storage, root)))
        if summary["interrupted"]:  # `tunectl tune ... && tunectl evaluate ...` must not go on after Ctrl-C
            raise typer.Exit(EXIT_INTERRUPTED)


def summary_json(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("study", "storage", "dataset", "n_trials", "states", "best", "epochs_used", "epochs_saved", "interrupted",
            "seconds")
    out = {k: summary[k] for k in keys if k in summary}
    out["leaderboard"] = [{k: v for k, v in r.items() if k not in ("curve", "config")} for r in summary["leaderboard"]]
    return out


@app.command("studies")
def studies_cmd(storage: StorageOpt = None, root: RootOpt = Path("studies"), json_out: JsonOpt = False) -> None:
    """List studies: data set, trials by state, best dev error, last activity."""
    with handled():
        from tunectl.report import studies_table
        from tunectl.tune import list_studies

        rows = list_studies(storage, root)
        if json_out:
            return print_json(rows)
        studies_table(consoles(False)[0], rows)


@app.command()
def show(
    study: Annotated[str, typer.Argument(help="study name")],
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="trials in the leaderboard")] = 10,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    json_out: JsonOpt = False,
) -> None:
    """Leaderboard, best trial, counts by state, epochs saved by pruning, parameter importances."""
    with handled():
        from tunectl import studies
        from tunectl.report import leaderboard
        from tunectl.tune import importances, open_study, summarize

        st = open_study(study, storage, root)
        summary = summarize(st, storage or studies.default_storage_url(study, root), top=top)
        imp = importances(st)
        from tunectl.diagnose import study_verdicts

        verdicts = study_verdicts(summary["leaderboard"], st.user_attrs.get("tunectl") or {})
        if json_out:
            return print_json({**summary_json(summary), "importances": imp,
                               "verdicts": {str(k): v for k, v in verdicts.items()}})
        short = {"high_bias": "bias", "high_variance": "variance", "high_bias_high_variance": "bias+var"}
        leaderboard(consoles(False)[0], summary, imp, verdicts={k: short.get(v, v) for k, v in verdicts.items()})


# ----------------------------------------------------------------------------- evaluate and export (issue 5)

TrialOpt = Annotated[Optional[int], typer.Option("--trial", "-t", help="trial number (default: the best complete trial)")]


@app.command()
def evaluate(
    study: Annotated[str, typer.Argument(help="study name")],
    trial: TrialOpt = None,
    refit: Annotated[bool, typer.Option("--refit", help="retrain on train+dev for the trial's best epoch count first")] = False,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The single, recorded look at the test set: test, dev and train error side by side."""
    with handled():
        from rich.table import Table

        from tunectl.evaluate import evaluate_study
        from tunectl.report import fmt

        stdout, stderr = consoles(json_out)
        if refit:
            stderr.print(f"[dim]refitting trial {'(best)' if trial is None else trial} on train+dev ...[/]")
        r = evaluate_study(study, trial, refit, root, storage, device)
        if json_out:
            return print_json(r)
        unit = "RMSE" if r["task"] == "regression" else "error rate"
        title = f"study {r['study']}, trial {r['trial']}" + (" (refit on train+dev)" if r["refit"] else "")
        table = Table(title=title, title_justify="left")
        for name in ("test", "dev", "train"):
            table.add_column(f"{name} {unit}", justify="right")
        dev = fmt(r["dev_error"]) if not r["refit"] else "trained on"
        table.add_row(fmt(r["test_error"]), dev, fmt(r["train_error"]))
        sizes = {**r["sizes"], "train": r["sizes"]["train"] + (r["sizes"]["dev"] if r["refit"] else 0)}
        table.add_row(*(f"[dim]{sizes[k]} examples[/]" for k in ("test", "dev", "train")))
        stdout.print(table)
        if r["refit"]:
            stdout.print(f"Refit on train+dev for {r['epochs']} epochs (the trial's best epoch count): train error is "
                         f"on train+dev; dev was trained on, so it has no held-out error.")
            stdout.print(f"Model: {r['model']}", soft_wrap=True)
        stdout.print(f"[dim]Look {r['evaluations']} at the test set, recorded in {r['record']}.[/]", soft_wrap=True)
        if r["evaluated_before"]:
            stdout.print(f"[yellow]Warning: {r['warning']}.[/]", soft_wrap=True)


@app.command()
def export(
    study: Annotated[str, typer.Argument(help="study name")],
    out: Annotated[Path, typer.Option("--out", "-o", help="a new folder for params.yaml, model.pt, split.json, README.md")],
    trial: TrialOpt = None,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    json_out: JsonOpt = False,
) -> None:
    """Export a trial: params.yaml, model.pt, split manifest and the command that reproduces it."""
    with handled():
        from tunectl.evaluate import export_trial
        from tunectl.report import fmt

        r = export_trial(study, out, trial, root, storage)
        if json_out:
            return print_json(r)
        stdout = consoles(False)[0]
        stdout.print(f"Exported trial {r['trial']} of {r['study']} (dev error {fmt(r['dev_error'])}) to {r['out']}/: "
                     f"{', '.join(r['files'])}", soft_wrap=True)
        stdout.print(f"Reproduce it with: [bold]{r['command']}[/]", soft_wrap=True)


# ----------------------------------------------------------------------------- diagnose (issue 4)


@app.command()
def diagnose(
    target: Annotated[str, typer.Argument(help="study name, or a `tunectl train` run folder")],
    trial: Annotated[Optional[int], typer.Option("--trial", "-t", help="trial number (default: the best complete trial)")] = None,
    human_error: Annotated[Optional[float], typer.Option(
        "--human-error", help="human-level error: an error rate, or RMSE in the target's units for regression (default 0)")] = None,
    bias_threshold: Annotated[Optional[float], typer.Option(
        "--bias-threshold", help="avoidable bias above this is high: error-rate points (default 0.02); "
                                 "regression: a fraction of the targets' std (default 0.1)")] = None,
    variance_threshold: Annotated[Optional[float], typer.Option(
        "--variance-threshold", help="dev - train above this is high; units as --bias-threshold")] = None,
    data_curve: Annotated[bool, typer.Option("--data-curve", help="retrain on 10/25/50/100% of the training split: would more data help?")] = False,
    next_space: Annotated[Optional[Path], typer.Option("--next-space", help="write the next search space (YAML) here")] = None,
    all_trials: Annotated[bool, typer.Option("--all", help="every complete trial: how many are bias- or variance-limited")] = False,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Bias or variance? The evidence, what to do next in this study's parameters, and the next search space."""
    with handled():
        from tunectl import diagnose as D
        from tunectl import studies
        from tunectl.report import diagnosis_overview, diagnosis_panel, fmt

        if next_space is not None:
            D.check_next_space(next_space)  # before any work (a --data-curve retrains for minutes)
        thresholds = D.Thresholds(bias_threshold, variance_threshold)
        thresholds.absolute("multiclass", None)  # a negative threshold is refused before any work
        if all_trials and (data_curve or next_space or trial is not None):
            fail("--all summarises every complete trial; --trial, --data-curve and --next-space take one trial")
        folder, name = Path(target), target
        if (folder / "study.db").is_file() and storage is None:  # `diagnose studies/NAME` works too
            name, root = folder.name, folder.parent
        if (folder / "history.json").is_file():
            if all_trials:
                fail(f"{target}: --all needs a study, and this is a run folder")
            subject = D.read_run(folder)
        elif storage is None and not (studies.study_dir(name, root) / "study.db").is_file():
            fail(f"'{target}' is neither a run folder (with history.json) nor a study under {root}/; "
                 f"list the studies with `tunectl studies --root {root}`")
        else:
            from tunectl.tune import ATTR, open_study, trial_record

            st = open_study(name, storage, root)
            meta = st.user_attrs.get(ATTR) or {}
            records = [trial_record(t) for t in st.get_trials(deepcopy=False)]
            if all_trials:
                overview = D.study_overview(records, meta, name, human_error or 0.0, thresholds)
                return print_json(overview) if json_out else diagnosis_overview(consoles(False)[0], overview)
            if trial is None:
                complete = sorted((r for r in records if r["state"] == "COMPLETE"), key=lambda r: r["value"])
                if not complete:
                    fail(f"study '{name}' has no complete trial yet; let it run, or pick one with --trial N")
                record = complete[0]
            else:
                record = next((r for r in records if r["number"] == trial), None)
                if record is None:
                    fail(f"study '{name}' has no trial {trial}; its trials are 0-{len(records) - 1}")
            subject = D.trial_subject(record, meta, name)
        D.check_human_error(human_error, subject.get("task"))  # refused before minutes of retraining
        stdout, stderr = consoles(json_out)
        points = None
        if data_curve:
            d = subject["data"]
            stderr.print("[dim]data curve: retraining the configuration on growing shares of the training split[/]")
            points = D.data_curve(subject["config"], spec_from(d), ratios_from(d), int(d.get("split_seed", 0)),
                                  device=device, on_point=lambda p: stderr.print(
                                      f"[dim]  {p['fraction']:>4.0%} ({p['n_train']} examples): train error "
                                      f"{fmt(p['train_error'])}, dev error {fmt(p['dev_error'])}[/]"))
        diag = D.diagnose_subject(subject, human_error, thresholds, points)
        out = diag.to_dict()
        if next_space:
            from tunectl.space import dump_space

            sp, comments = D.next_space(diag, subject["config"], subject["space"], subject["data"].get("dataset"))
            next_space.parent.mkdir(parents=True, exist_ok=True)
            studies.write_text(next_space, dump_space(sp, comments))
            out["next_space"] = str(next_space)
        if json_out:
            return print_json(out)
        diagnosis_panel(stdout, out)
        if next_space:
            stdout.print(f"Next search space written to {next_space}; run it with "
                         f"[bold]tunectl tune --space {next_space} --study NEW_NAME[/]")


# ----------------------------------------------------------------------------- report and dashboard (issue 6)


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="study name")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML file (default: studies/<study>/report.html)")] = None,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    json_out: JsonOpt = False,
) -> None:
    """The morning report: one self-contained HTML file with the study's tables and figures."""
    with handled():
        from tunectl.html_report import report_study

        path = report_study(study, storage, root, out)
        if json_out:
            return print_json({"study": study, "report": str(path)})
        consoles(False)[0].print(f"report written to {path}", soft_wrap=True)


@app.command()
def dashboard(
    study: Annotated[str, typer.Argument(help="study name")],
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8080,
    host: Annotated[str, typer.Option("--host", help="address to listen on (127.0.0.1: this machine only)")] = "127.0.0.1",
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
) -> None:
    """Open the study in optuna-dashboard on localhost (needs the optional extra: pip install optuna-dashboard)."""
    with handled():
        try:
            import optuna_dashboard
        except ImportError:
            fail("optuna-dashboard is not installed; install it with: pip install 'tunectl[dashboard]'")
        from tunectl import studies
        from tunectl.tune import open_study

        open_study(study, storage, root)  # a missing study is one clear line, not an empty dashboard
        url = storage or studies.default_storage_url(study, root)
        consoles(False)[1].print(f"optuna-dashboard: http://{host}:{port}/dashboard  (study '{study}'; Ctrl-C stops it)",
                                 soft_wrap=True)
        try:
            optuna_dashboard.run_server(studies.open_storage(url, None, create=False), host=host, port=port)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a dashboard is closed: not an error
        except OSError as e:
            fail(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
