"""The Typer app: each command parses its options, calls one core function, and renders the result.

Heavy imports (torch, optuna) live inside the command bodies so that `tunectl --help`
answers at once. Results go to stdout (or JSON with --json); progress, notes and errors to
stderr; how each failure becomes one line and an exit code is `console.py`.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tunectl.console import EXIT_INTERRUPTED, FlagCommand, OneLineGroup, consoles, fail, handled, note, print_json

app = typer.Typer(
    cls=OneLineGroup,
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tune deep-learning hyperparameters the way a practitioner does by hand, overnight and at scale.",
)

# ----------------------------------------------------------------------------- choices and completion
# Choices are Enums: --help lists them, completion offers them, a typo is one line (exit 2). The core
# receives their plain string values (`.value`), and None still means "not given".


class Sampler(str, Enum):
    tpe = "tpe"
    random = "random"
    grid = "grid"
    cmaes = "cmaes"
    qmc = "qmc"


class Pruner(str, Enum):
    hyperband = "hyperband"
    halving = "halving"
    median = "median"
    none = "none"


class ExportFormat(str, Enum):
    torch = "torch"
    onnx = "onnx"


class Task(str, Enum):
    binary = "binary"
    multiclass = "multiclass"
    regression = "regression"


def _value(choice: Enum | None) -> str | None:
    return None if choice is None else choice.value


def _starting(words: list[str], incomplete: str) -> list[str]:
    return [w for w in words if w.startswith(incomplete)]


def complete_model(incomplete: str) -> list[str]:
    """--model is free text (it also takes FILE.py:FUNCTION); completion offers the built-in models."""
    return _starting(["mlp", "cnn", "transfer"], incomplete)


def complete_device(incomplete: str) -> list[str]:
    """--device is free text (cuda:N); completion offers the usual names, without importing torch."""
    return _starting(["cpu", "cuda", "cuda:0", "cuda:1", "mps"], incomplete)


def complete_study(ctx: typer.Context, incomplete: str) -> list[str]:
    """The study folders under --root (or TUNECTL_STUDIES, or studies/): folder names only, never
    opening a study (no Optuna, no torch), so that a Tab answers at once."""
    root = (ctx.params.get("root") if ctx is not None else None) or os.environ.get("TUNECTL_STUDIES") or "studies"
    try:
        names = sorted({p.parent.name for p in Path(root).glob("*/study.db")})
    except OSError:
        return []
    return _starting(names, incomplete)


def _device_given(ctx: typer.Context, param: typer.CallbackParam, value: Optional[str]) -> Optional[str]:
    """TUNECTL_DEVICE is shown on --device, but the core reads it itself (its messages name the variable):
    a value from the environment is passed on as None, exactly as before."""
    source = ctx.get_parameter_source(param.name) if param.name else None
    return None if getattr(source, "name", None) == "ENVIRONMENT" else value


# ----------------------------------------------------------------------------- shared options

DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", "-d", help="digits, mnist, csv:PATH, ... (see `tunectl datasets`)")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="where torchvision data sets live")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="download a torchvision data set if absent")]
TargetOpt = Annotated[Optional[str], typer.Option("--target", help="csv:/parquet: the column to predict")]
DropOpt = Annotated[Optional[str], typer.Option("--drop", help="csv:/parquet: columns to leave out, e.g. id,name")]
CategoricalOpt = Annotated[Optional[str], typer.Option("--categorical", help="csv:/parquet: columns to one-hot "
                           "encode whatever their values (default: text columns)")]
NumericOpt = Annotated[Optional[str], typer.Option("--numeric", help="csv:/parquet: columns to read as numbers "
                       "(default: columns whose every value is a number)")]
DropnaOpt = Annotated[bool, typer.Option("--dropna", help="csv:/parquet: drop incomplete rows instead of filling "
                      "them (training median + indicator, or a 'missing' category)")]
TaskOpt = Annotated[Optional[Task], typer.Option("--task", help="force the task (default: inferred from the targets)")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="train,dev,test fractions, e.g. 0.8,0.1,0.1")]
ClassesOpt = Annotated[Optional[str], typer.Option("--classes", help="classification: keep only these classes, relabelled "
                       "0..k-1: 0-4, 5,6,7 or names as listed (recorded in the split)")]
ImageSizeOpt = Annotated[Optional[int], typer.Option("--image-size", help="folder: resize images to N x N")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout, nothing else")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", envvar="TUNECTL_DEVICE", show_envvar=True,
                     callback=_device_given, autocompletion=complete_device,
                     help="cpu, cuda, cuda:N, mps (default: the best present)")]
StorageOpt = Annotated[Optional[str], typer.Option("--storage", envvar="TUNECTL_STORAGE", show_envvar=True, help="Optuna storage URL (default: studies/<study>/study.db); TUNECTL_STORAGE keeps a password out of ps")]
RootOpt = Annotated[Path, typer.Option("--root", help="folder that holds the studies", envvar="TUNECTL_STUDIES",
                                       show_envvar=True)]
StudyArg = Annotated[str, typer.Argument(help="study name", autocompletion=complete_study)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no live display: the final summary only")]
ModelHelp = ("mlp | cnn | transfer, or your own builder FILE.py:FUNCTION (or package.module:FUNCTION): "
             "FUNCTION(input_shape, out_dim, **params) -> nn.Module with raw outputs; its initialisation stays "
             "yours; the file runs with your rights")
TrialOpt = Annotated[Optional[int], typer.Option("--trial", "-t", help="trial number (default: the best complete trial)")]


def data_flags(dataset, data_dir, target, task, split, image_size, split_seed=None, classes=None,
               drop=None, categorical=None, numeric=None, dropna=False) -> dict[str, Any]:
    """The data options as given (None: not given), for DataSettings.from_dict(..., **flags)."""
    return {"dataset": dataset, "data_dir": str(data_dir) if data_dir is not None else None, "target": target,
            "task": _value(task), "split": split, "image_size": image_size, "split_seed": split_seed, "classes": classes,
            "drop": drop, "categorical": categorical, "numeric": numeric, "dropna": dropna or None}


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"tunectl {version('tunectl')}")
        except PackageNotFoundError:  # a checkout run without installing it
            typer.echo("tunectl (not installed: version unknown)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print tunectl's version and exit")] = False,
) -> None:
    pass


# ----------------------------------------------------------------------------- commands


@app.command(cls=FlagCommand)
def datasets(
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="show what tunectl makes of this data "
                       "set (a table: its columns by type, rows dropped, features after encoding)")] = None,
    target: TargetOpt = None,
    drop: DropOpt = None,
    categorical: CategoricalOpt = None,
    numeric: NumericOpt = None,
    dropna: DropnaOpt = False,
    task: TaskOpt = None,
    split: SplitOpt = None,
    split_seed: Annotated[Optional[int], typer.Option("--split-seed", help="seed of the train/dev/test split")] = None,
    classes: ClassesOpt = None,
    image_size: ImageSizeOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the data sets and where they come from; with --dataset, what is inferred from one."""
    with handled():
        from tunectl.report import datasets_table, dataset_summary
        from tunectl.sources import describe

        if dataset is not None:
            from tunectl.data import DataSettings, inspect

            info = inspect(DataSettings.from_dict({}, **data_flags(
                dataset, data_dir, target, task, split, image_size, split_seed, classes, drop, categorical, numeric,
                dropna)))
            if json_out:
                return print_json(info)
            return dataset_summary(consoles(False)[0], info)
        rows = describe()
        if json_out:
            return print_json([{"name": n, "source": s} for n, s in rows])
        datasets_table(consoles(False)[0], rows)


@app.command(cls=FlagCommand)
def spaces(json_out: JsonOpt = False) -> None:
    """List the search spaces shipped with tunectl: `tunectl tune --space NAME` works from any folder."""
    with handled():
        from tunectl.report import spaces_table
        from tunectl.space import describe_shipped

        rows = describe_shipped()
        if json_out:
            return print_json(rows)
        spaces_table(consoles(False)[0], rows)


@app.command(cls=FlagCommand)
def train(
    dataset: DatasetOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=ModelHelp,
                                                 autocompletion=complete_model)] = None,
    params: Annotated[Optional[Path], typer.Option("--params", help="params.yaml from `tunectl export` or a run's config.yaml")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="key=value, repeatable: --set lr=3e-4 --set depth=3")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="epochs to train")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="seed for weights, dropout and batch order")] = None,
    split_seed: Annotated[Optional[int], typer.Option("--split-seed", help="seed of the train/dev/test split")] = None,
    train_fraction: Annotated[Optional[float], typer.Option("--train-fraction", help="train on this seeded fraction of the training split")] = None,
    init_from: Annotated[Optional[Path], typer.Option("--init-from", help="transfer: a tunectl model.pt to start from")] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="transfer: local torchvision weights for --set arch=resnet18")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="a new run folder (default: studies/runs/<dataset>-<model>-<time>)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace --out if it already holds files")] = False,
    allow_changed_model: Annotated[bool, typer.Option("--allow-changed-model", help="--params naming your own builder: "
                                   "use its file even though its SHA-256 differs from the recorded one")] = False,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    target: TargetOpt = None,
    drop: DropOpt = None,
    categorical: CategoricalOpt = None,
    numeric: NumericOpt = None,
    dropna: DropnaOpt = False,
    task: TaskOpt = None,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train one model and babysit it: live progress, a summary, a run folder."""
    with handled():
        from tunectl import config as C
        from tunectl import runs
        from tunectl.data import DataSettings
        from tunectl.report import TrainDisplay, train_summary

        values, data = runs.read_params(params) if params else ({}, DataSettings())
        given = {"model": model, "epochs": epochs, "seed": seed,
                 "init_from": str(init_from or weights) if (init_from or weights) else None}
        values.update({k: v for k, v in given.items() if v is not None}, **C.parse_set(set_ or []))
        data = DataSettings.from_dict(data.to_dict(), download=download, train_fraction=train_fraction,
                                      **data_flags(dataset, data_dir, target, task, split, image_size, split_seed, classes,
                                                   drop, categorical, numeric, dropna))
        plan = runs.plan(values, data, out, force, device, allow_changed_model)  # every check before any display or folder
        stdout, stderr = consoles(json_out, quiet)
        if plan.splits.manifest.get("preprocessing") and not quiet:  # a table: what was inferred, first
            from tunectl.tables import describe

            for line in describe(plan.splits.manifest["preprocessing"]):
                typer.echo(line, err=True)
        with TrainDisplay(stderr, plan.cfg.epochs, f"{data.dataset} {plan.cfg.model}") as display:
            result = runs.execute(plan, on_epoch=display.on_epoch, on_batch=display.on_batch)
        if result["moved"]:
            note(f"{plan.out} was made by another process meanwhile; this run is in {result['out']}")
        if json_out:
            return print_json({k: v for k, v in result.items() if k not in ("moved", "task")})
        train_summary(stdout, result, result["task"])
        if result["status"] == "diverged":
            stdout.print("[yellow]The loss became NaN or infinite: lower lr (e.g. --set lr=1e-4) or check the inputs' scale.[/]")


@app.command(cls=FlagCommand)
def tune(
    space: Annotated[Optional[str], typer.Option("--space", "-s", help="a shipped search space by name (quick, mlp, cnn, "
                     "transfer: see `tunectl spaces`; default quick) or the path of a search-space YAML; "
                     "omit it to join a study that exists on --storage")] = None,
    dataset: DatasetOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="override the space's model: " + ModelHelp,
                                                 autocompletion=complete_model)] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="study name (default: <dataset>-<space>)",
                                                 autocompletion=complete_study)] = None,
    storage: StorageOpt = None,
    trials: Annotated[Optional[int], typer.Option("--trials", "-n", help="complete+pruned trials the study should reach")] = None,
    timeout: Annotated[Optional[str], typer.Option("--timeout", help="stop after 90s, 30m, 8h, ...")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="worker processes on this machine")] = 1,
    sampler: Annotated[Optional[Sampler], typer.Option("--sampler", help="the sampler (default: tpe, or the study's "
                       "own when resuming; a change is recorded in the study)")] = None,
    pruner: Annotated[Optional[Pruner], typer.Option("--pruner", help="the pruner (default: hyperband, or the "
                      "study's own when resuming)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the sampler and of every trial's training")] = 0,
    split_seed: Annotated[Optional[int], typer.Option("--split-seed", help="seed of the study's train/dev/test split (default 0)")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="override the space's epochs per trial")] = None,
    init_from: Annotated[Optional[Path], typer.Option("--init-from", help="transfer: checkpoint the body starts from")] = None,
    heartbeat: Annotated[int, typer.Option("--heartbeat", help="seconds between heartbeats; a trial silent 3x as long is retried")] = 10,
    root: RootOpt = Path("studies"),
    data_dir: DataDirOpt = None,
    target: TargetOpt = None,
    drop: DropOpt = None,
    categorical: CategoricalOpt = None,
    numeric: NumericOpt = None,
    dropna: DropnaOpt = False,
    task: TaskOpt = None,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = None,
    artifacts: Annotated[Optional[Path], typer.Option("--artifacts", help="folder for the best trials' checkpoints, shared "
                         "by all workers (default: studies/<study>/artifacts)")] = None,
    report_: Annotated[bool, typer.Option("--report", help="write the HTML morning report at the end (after "
                       "--timeout or Ctrl-C too); see `tunectl report`")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run (or resume) a study: many models side by side, the hopeless ones pruned."""
    with handled():
        from tunectl import storage as store
        from tunectl.report import TuneDisplay, leaderboard
        from tunectl.results import summary_json
        from tunectl.tune import run_study, settings_for
        from tunectl.workers import parse_timeout

        settings = settings_for(
            space, data_flags(dataset, data_dir, target, task, split, image_size, split_seed, classes, drop, categorical,
                              numeric, dropna), study, storage, model,
            str(init_from) if init_from else None, epochs, root=str(root), n_trials=trials,
            timeout=parse_timeout(timeout), jobs=jobs, sampler=_value(sampler), pruner=_value(pruner), seed=seed, heartbeat=heartbeat,
            device=device, artifacts=str(artifacts) if artifacts else None)
        if store.is_server(settings.storage_url):  # a dead or refusing server: one line, before any display
            store.open_storage(settings.storage_url, None)
        stdout, stderr = consoles(json_out, quiet)
        with TuneDisplay(stderr, settings.study, trials) as display:
            summary = run_study(settings, on_progress=display.update, on_note=note)
        report_path = None
        if report_:  # run_study returns on a timeout or Ctrl-C as well, so the night's work is reported
            from tunectl.html_report import report_study

            report_path = report_study(settings.study, settings.storage, settings.root)
            if not json_out:  # the report's path is part of the final summary: shown with -q too
                typer.echo(f"report: {report_path}", err=True)
        if json_out:
            print_json({**summary_json(summary), **({"report": str(report_path)} if report_path else {})})
        else:
            if summary["interrupted"]:
                stdout.print(f"[yellow]Stopped. Resume with the same command; the study is '{settings.study}'.[/]")
            leaderboard(stdout, summary, summary["importances"])
        if summary["interrupted"]:  # `tunectl tune ... && tunectl evaluate ...` must not go on after Ctrl-C
            raise typer.Exit(EXIT_INTERRUPTED)


@app.command("studies", cls=FlagCommand)
def studies_cmd(storage: StorageOpt = None, root: RootOpt = Path("studies"), json_out: JsonOpt = False) -> None:
    """List studies: data set, trials by state, best dev error, last activity."""
    with handled():
        from tunectl.report import studies_table
        from tunectl.results import list_studies

        rows = list_studies(storage, root)
        if json_out:
            return print_json(rows)
        studies_table(consoles(False)[0], rows)


@app.command(cls=FlagCommand)
def show(
    study: StudyArg,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="trials in the leaderboard")] = 10,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    json_out: JsonOpt = False,
) -> None:
    """Leaderboard, best trial, counts by state, epochs saved by pruning, parameter importances."""
    with handled():
        from tunectl.diagnose import board
        from tunectl.report import VERDICT_SHORT, leaderboard
        from tunectl.results import summary_json

        summary = board(study, storage, root, top)
        verdicts = summary["verdicts"]
        if json_out:
            return print_json({**summary_json(summary), "verdicts": {str(k): v for k, v in verdicts.items()}})
        leaderboard(consoles(False)[0], summary, summary["importances"],
                    verdicts={k: VERDICT_SHORT.get(v, v) for k, v in verdicts.items()})


@app.command(cls=FlagCommand)
def evaluate(
    study: StudyArg,
    trial: TrialOpt = None,
    refit: Annotated[bool, typer.Option("--refit", help="retrain on train+dev for the trial's best epoch count first")] = False,
    allow_changed_model: Annotated[bool, typer.Option("--allow-changed-model", help="your own builder's file changed "
                                   "since tuning: use it as it is now (its SHA-256 differs from the recorded one)")] = False,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The single, recorded look at the test set: test, dev and train error side by side."""
    with handled():
        from tunectl.evaluate import evaluate_study
        from tunectl.report import evaluation

        stdout, stderr = consoles(json_out, quiet)
        if refit:
            stderr.print(f"[dim]refitting trial {'(best)' if trial is None else trial} on train+dev ...[/]")
        r = evaluate_study(study, trial, refit, root, storage, device, allow_changed_model)
        if json_out:
            return print_json(r)
        evaluation(stdout, r)


@app.command(cls=FlagCommand)
def export(
    study: StudyArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="a new folder for params.yaml, model.pt, split.json, README.md")],
    trial: TrialOpt = None,
    format_: Annotated[ExportFormat, typer.Option("--format", help="onnx: model.onnx too, with the input scaling "
                       "folded in (probabilities out)")] = ExportFormat.torch,
    allow_changed_model: Annotated[bool, typer.Option("--allow-changed-model", help="your own builder's file changed "
                                   "since tuning: use it as it is now (its SHA-256 differs from the recorded one)")] = False,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    json_out: JsonOpt = False,
) -> None:
    """Export a trial: params.yaml, model.pt, split manifest and the command that reproduces it."""
    with handled():
        from tunectl.evaluate import export_trial
        from tunectl.report import export_summary

        r = export_trial(study, out, trial, root, storage, allow_changed_model, onnx=format_ == ExportFormat.onnx)
        if json_out:
            return print_json(r)
        export_summary(consoles(False)[0], r)


@app.command(cls=FlagCommand)
def predict(
    source: Annotated[str, typer.Argument(help="a study name, or a folder with model.pt and split.json (an export "
                                          "bundle, a train run)", autocompletion=complete_study)],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="the new data: csv:PATH or parquet:PATH with the "
                       "training columns, npz:PATH (an array x, y not needed) or folder:DIR of images")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="the predictions CSV (a new file; written whole)")] = None,
    trial: TrialOpt = None,
    id_: Annotated[Optional[str], typer.Option("--id", help="a table's column to name each row by (default: the "
                   "row number from 0)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace --out if it exists")] = False,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    device: DeviceOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="the predictions as JSON on stdout (with or without --out)")] = False,
) -> None:
    """Use a tuned model on new data: its stored preprocessing, then the model; class probabilities too."""
    with handled():
        from tunectl.predict import predict as run_predict
        from tunectl.report import prediction_summary

        if out is None and not json_out:
            fail("give --out FILE for the predictions CSV (or --json for stdout), e.g. --out predictions.csv")
        r = run_predict(source, dataset, out, trial, root, storage, id_, device, force)
        if json_out:
            return print_json(r)
        prediction_summary(consoles(False)[0], r)


@app.command(cls=FlagCommand)
def diagnose(
    target: Annotated[str, typer.Argument(help="study name, or a `tunectl train` run folder",
                                          autocompletion=complete_study)],
    trial: TrialOpt = None,
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
    quiet: QuietOpt = False,
) -> None:
    """Bias or variance? The evidence, what to do next in this study's parameters, and the next search space."""
    with handled():
        from tunectl.diagnose import Thresholds, diagnose_target
        from tunectl.report import curve_point, diagnosis_overview, diagnosis_panel

        stdout, stderr = consoles(json_out, quiet)
        out = diagnose_target(target, trial, human_error, Thresholds(bias_threshold, variance_threshold), data_curve,
                              next_space, all_trials, storage, root, device, on_curve=lambda p: curve_point(stderr, p))
        if json_out:
            return print_json({k: v for k, v in out.items() if k != "overview"})
        if out.get("overview"):
            return diagnosis_overview(stdout, out)
        diagnosis_panel(stdout, out)
        if next_space:
            stdout.print(f"Next search space written to {next_space}; run it with "
                         f"[bold]tunectl tune --space {next_space} --study NEW_NAME[/]")


@app.command(cls=FlagCommand)
def report(
    study: StudyArg,
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


@app.command(cls=FlagCommand)
def dashboard(
    study: StudyArg,
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
        from tunectl import storage as store
        from tunectl import studies
        from tunectl.results import open_study

        open_study(study, storage, root)  # a missing study is one clear line, not an empty dashboard
        url = storage or studies.default_storage_url(study, root)
        consoles(False)[1].print(f"optuna-dashboard: http://{host}:{port}/dashboard  (study '{study}'; Ctrl-C stops it)",
                                 soft_wrap=True)
        try:
            optuna_dashboard.run_server(store.open_storage(url, None, create=False), host=host, port=port)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a dashboard is closed: not an error
        except OSError as e:
            fail(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
