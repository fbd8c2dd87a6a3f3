"""The Typer app: each command parses its options, calls one core function, and renders the result.

Heavy imports (torch, optuna) live inside the command bodies so that `tunectl --help`
answers at once. Results go to stdout (or JSON with --json); progress, notes and errors to
stderr; how each failure becomes one line and an exit code is `console.py`.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from contextlib import contextmanager
from typing import Annotated, Any, Iterator, Optional

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


class Attack(str, Enum):
    fgsm = "fgsm"
    pgd = "pgd"


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
    return _starting(["mlp", "cnn", "transfer", "rnn"], incomplete)


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
SequenceOpt = Annotated[Optional[str], typer.Option("--sequence", help="csv: the text column a recurrent net "
                        "reads as characters (DNA, text); the vocabulary comes from the training split")]
AsSequenceOpt = Annotated[bool, typer.Option("--as-sequence", help="read the data as sequences: an image as H steps "
                          "of W features, an npz's N x T integers as tokens (recorded in the split)")]
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
ModelHelp = ("mlp | cnn | transfer | rnn, or your own builder FILE.py:FUNCTION (or package.module:FUNCTION): "
             "FUNCTION(input_shape, out_dim, **params) -> nn.Module with raw outputs; its initialisation stays "
             "yours; the file runs with your rights")
StreamOpt = Annotated[bool, typer.Option("--stream", help="image data: read each mini-batch from the memory-mapped "
                     "bytes rather than holding the data set on the device (same split and results; automatic when "
                     "it is larger than half the memory available)")]
FastCurvesOpt = Annotated[bool, typer.Option("--fast-curves", help="per-epoch train error as the running average over "
                         "the epoch (dropout on, weights moving): saves the eval-mode pass over a dev-sized sample of the "
                         "training split (about one more dev evaluation an epoch), but that curve is not comparable with "
                         "the dev curve; the final train error is still measured in eval mode")]
TrialOpt = Annotated[Optional[int], typer.Option("--trial", "-t", help="trial number (default: the best complete trial)")]


def data_flags(dataset, data_dir, target, task, split, image_size, split_seed=None, classes=None, *,
               sequence=None, as_sequence=False, drop=None, categorical=None, numeric=None,
               dropna=False) -> dict[str, Any]:
    """The data options as given (None: not given), for DataSettings.from_dict(..., **flags)."""
    return {"dataset": dataset, "data_dir": str(data_dir) if data_dir is not None else None, "target": target,
            "task": _value(task), "split": split, "image_size": image_size, "split_seed": split_seed, "classes": classes,
            "sequence": sequence, "as_sequence": True if as_sequence else None,
            "drop": drop, "categorical": categorical, "numeric": numeric, "dropna": dropna or None}


def run_values(params: Path | None, set_: list[str] | None, **given: Any) -> tuple[dict[str, Any], Any]:
    """A run's values and data settings (`train`, `lr-find`): the --params file's, then the flags
    given (None: not given), then each --set key=value over them."""
    from tunectl import config as C
    from tunectl import runs
    from tunectl.data import DataSettings

    values, data = runs.read_params(params) if params else ({}, DataSettings())
    values.update({k: v for k, v in given.items() if v is not None}, **C.parse_set(set_ or []))
    return values, data


@contextmanager
def decoding(json_out: bool, quiet: bool) -> Iterator[None]:
    """A `folder:` data set decoded into the cache meanwhile: its progress bar on stderr (none on a cache hit)."""
    from tunectl import cache
    from tunectl.report import DecodeDisplay

    with DecodeDisplay(consoles(json_out, quiet)[1]) as display, cache.reporting(display.update, note):
        yield


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
                dataset, data_dir, target, task, split, image_size, split_seed, classes, drop=drop,
                categorical=categorical, numeric=numeric, dropna=dropna)))
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
    sequence: SequenceOpt = None,
    as_sequence: AsSequenceOpt = False,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = None,
    stream: StreamOpt = False,
    fast_curves: FastCurvesOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train one model and babysit it: live progress, a summary, a run folder."""
    with handled():
        from tunectl import runs
        from tunectl.data import DataSettings
        from tunectl.report import TrainDisplay, train_summary

        values, data = run_values(params, set_, model=model, epochs=epochs, seed=seed,
                                  init_from=str(init_from or weights) if (init_from or weights) else None,
                                  fast_curves=True if fast_curves else None)
        data = DataSettings.from_dict(data.to_dict(), download=download, train_fraction=train_fraction, stream=stream,
                                      **data_flags(dataset, data_dir, target, task, split, image_size, split_seed, classes,
                                                   sequence=sequence, as_sequence=as_sequence, drop=drop,
                                                   categorical=categorical, numeric=numeric, dropna=dropna))
        with decoding(json_out, quiet):
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


@app.command("lr-find", cls=FlagCommand)
def lr_find(
    dataset: DatasetOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=ModelHelp, autocompletion=complete_model)] = None,
    params: Annotated[Optional[Path], typer.Option("--params", help="params.yaml from `tunectl export` or a run's config.yaml")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="key=value, repeatable: --set optimizer=momentum")] = None,
    space: Annotated[Optional[str], typer.Option("--space", "-s", help="with --next-space: the space whose lr range is "
                     "replaced (a shipped name or a YAML path); its model is used too")] = None,
    next_space: Annotated[Optional[Path], typer.Option("--next-space", help="write a search space with the suggested lr range here")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="write the loss-against-lr curve here (PNG)")] = None,
    steps: Annotated[int, typer.Option("--steps", help="mini-batches, the learning rate growing each one")] = 100,
    start: Annotated[float, typer.Option("--start", help="the first learning rate")] = 1e-7,
    end: Annotated[float, typer.Option("--end", help="the last learning rate")] = 10.0,
    split_seed: Annotated[Optional[int], typer.Option("--split-seed", help="seed of the train/dev/test split")] = None,
    data_dir: DataDirOpt = None,
    target: TargetOpt = None,
    task: TaskOpt = None,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    drop: DropOpt = None,
    categorical: CategoricalOpt = None,
    numeric: NumericOpt = None,
    dropna: DropnaOpt = False,
    sequence: SequenceOpt = None,
    as_sequence: AsSequenceOpt = False,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The learning-rate range test: loss against an exponentially growing lr, and the range to search."""
    with handled():
        from tunectl.data import DataSettings
        from tunectl.lrfind import lr_find as find
        from tunectl.report import lr_find_summary

        values, data = run_values(params, set_, model=model)
        data = DataSettings.from_dict(data.to_dict(), **data_flags(dataset, data_dir, target, task, split, image_size,
                                                                   split_seed, classes, sequence=sequence,
                                                                   as_sequence=as_sequence, drop=drop,
                                                                   categorical=categorical, numeric=numeric,
                                                                   dropna=dropna))
        stdout, _ = consoles(json_out, quiet)
        r = find(values, data, steps, start, end, device, plot, next_space, space,
                 data_from_space=dataset is None and params is None)
        if json_out:
            return print_json(r)
        lr_find_summary(stdout, r)


@app.command(cls=FlagCommand)
def tune(
    space: Annotated[Optional[str], typer.Option("--space", "-s", help="a shipped search space by name (quick, mlp, cnn, rnn, "
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
    sequence: SequenceOpt = None,
    as_sequence: AsSequenceOpt = False,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = None,
    artifacts: Annotated[Optional[Path], typer.Option("--artifacts", help="folder for the best trials' checkpoints, shared "
                         "by all workers (default: studies/<study>/artifacts)")] = None,
    report_: Annotated[bool, typer.Option("--report", help="write the HTML morning report at the end (after "
                       "--timeout or Ctrl-C too); see `tunectl report`")] = False,
    defaults_first: Annotated[bool, typer.Option("--defaults-first/--no-defaults-first", help="a new study's first "
                              "trial is the textbook defaults (Adam, lr 1e-3, batch 64, ...), clipped into the space")] = True,
    enqueue: Annotated[Optional[list[Path]], typer.Option("--enqueue", help="a params file (export's params.yaml, or "
                       "YAML of values) to try first; repeatable")] = None,
    warm_from: Annotated[Optional[str], typer.Option("--warm-from", help="try another study's best trials first "
                         "(same or overlapping space)", autocompletion=complete_study)] = None,
    warm_top: Annotated[int, typer.Option("--warm-top", help="how many of --warm-from's best trials")] = 3,
    stream: StreamOpt = False,
    fast_curves: FastCurvesOpt = False,
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
            space, data_flags(dataset, data_dir, target, task, split, image_size, split_seed, classes,
                              sequence=sequence, as_sequence=as_sequence, drop=drop, categorical=categorical,
                              numeric=numeric, dropna=dropna), study, storage, model,
            str(init_from) if init_from else None, epochs, fast_curves=fast_curves, root=str(root), n_trials=trials,
            timeout=parse_timeout(timeout), jobs=jobs, sampler=_value(sampler), pruner=_value(pruner), seed=seed, heartbeat=heartbeat,
            device=device, artifacts=str(artifacts) if artifacts else None, defaults_first=defaults_first,
            enqueue=[str(p) for p in enqueue or []], warm_from=warm_from, warm_top=warm_top, stream=stream)
        if store.is_server(settings.storage_url):  # a dead or refusing server: one line, before any display
            store.open_storage(settings.storage_url, None)
        stdout, stderr = consoles(json_out, quiet)
        with decoding(json_out, quiet), TuneDisplay(stderr, settings.study, trials) as display:
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
def recheck(
    study: StudyArg,
    top: Annotated[int, typer.Option("--top", "-k", help="the best N complete trials to re-train")] = 3,
    seeds: Annotated[int, typer.Option("--seeds", help="new seeds per trial (the trial's seed + 1, + 2, ...)")] = 3,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Re-train the top trials with new seeds (same split) and rank them by the mean: was the winner lucky?"""
    with handled():
        from tunectl.recheck import recheck_study
        from tunectl.report import recheck_line, recheck_table

        stdout, stderr = consoles(json_out, quiet)
        r = recheck_study(study, top, seeds, storage, root, device, on_result=lambda x: recheck_line(stderr, x),
                          on_note=note)
        if json_out:
            return print_json(r)
        recheck_table(stdout, r)


@app.command(cls=FlagCommand)
def evaluate(
    study: StudyArg,
    trial: TrialOpt = None,
    refit: Annotated[bool, typer.Option("--refit", help="retrain on train+dev for the trial's best epoch count first")] = False,
    allow_changed_model: Annotated[bool, typer.Option("--allow-changed-model", help="your own builder's file changed "
                                   "since tuning: use it as it is now (its SHA-256 differs from the recorded one)")] = False,
    attack: Annotated[Optional[Attack], typer.Option("--attack", help="also measure the test error under an "
                      "adversarial attack: fgsm (one step) or pgd (--steps steps); recorded with this look")] = None,
    eps: Annotated[Optional[float], typer.Option("--eps", help="the attack's budget: the most each input value "
                   "moves, in standard deviations of the (standardized) inputs, e.g. 0.1")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="pgd: the number of steps (default 10)")] = None,
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The single, recorded look at the test set: test, dev and train error side by side (and under attack)."""
    with handled():
        from tunectl.evaluate import evaluate_study
        from tunectl.report import evaluation

        stdout, stderr = consoles(json_out, quiet)
        if refit:
            stderr.print(f"[dim]refitting trial {'(best)' if trial is None else trial} on train+dev ...[/]")
        with decoding(json_out, quiet):
            r = evaluate_study(study, trial, refit, root, storage, device, allow_changed_model, _value(attack), eps, steps)
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
        with decoding(json_out, quiet):
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
    static: Annotated[bool, typer.Option("--static", help="PNG figures and no script (for mail or a strict viewer); "
                                                          "default: interactive plotly figures, still one offline file")] = False,
) -> None:
    """The morning report: one self-contained HTML file with the study's tables and figures."""
    with handled():
        from tunectl.html_report import report_study

        path = report_study(study, storage, root, out, static=static)
        if json_out:
            return print_json({"study": study, "report": str(path)})
        consoles(False)[0].print(f"report written to {path}", soft_wrap=True)


@app.command(cls=FlagCommand)
def dashboard(
    study: StudyArg,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port to listen on")] = 8080,
    host: Annotated[str, typer.Option("--host", help="address to listen on (127.0.0.1: this machine only)")] = "127.0.0.1",
    storage: StorageOpt = None,
    root: RootOpt = Path("studies"),
    artifacts: Annotated[Optional[Path], typer.Option(
        "--artifacts", help="folder of the study's checkpoints, if not the one it recorded (a shared mount)")] = None,
) -> None:
    """Open the study in optuna-dashboard on localhost (needs the optional extra: pip install optuna-dashboard)."""
    with handled():
        try:
            import optuna_dashboard
        except ImportError:
            fail("optuna-dashboard is not installed; install it with: pip install 'tunectl[dashboard]'")
        from tunectl.results import dashboard_args

        args = dashboard_args(study, storage, root, artifacts)
        consoles(False)[1].print(f"optuna-dashboard: http://{host}:{port}/dashboard  (study '{study}', checkpoints in "
                                 f"{args['artifacts']}; Ctrl-C stops it)", soft_wrap=True)
        try:
            optuna_dashboard.run_server(args["storage"], host=host, port=port, artifact_store=args["artifact_store"])
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a dashboard is closed: not an error
        except OSError as e:
            fail(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port")


# ----------------------------------------------------------------------------- tunectl cache

cache_app = typer.Typer(cls=OneLineGroup, no_args_is_help=True,
                        help="The decode-once cache of folder: data sets (TUNECTL_CACHE, default ~/.cache/tunectl).")
app.add_typer(cache_app, name="cache")


@cache_app.command("list", cls=FlagCommand)
def cache_list(json_out: JsonOpt = False) -> None:
    """List the cached folders: source, images, shape, size on disk, and whether the folder still matches."""
    with handled():
        from tunectl import cache
        from tunectl.report import cache_table

        listing = cache.listing()
        if json_out:
            return print_json(listing)
        cache_table(consoles(False)[0], listing)


@cache_app.command("clear", cls=FlagCommand)
def cache_clear(
    stale: Annotated[bool, typer.Option("--stale", help="only the entries whose folder changed or is gone")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove cached folders (all, or --stale ones) and leftovers of killed builds; the next use decodes again."""
    with handled():
        from tunectl import cache
        from tunectl.report import mib

        r = cache.clear(stale)
        if json_out:
            return print_json(r)
        typer.echo(f"removed {len(r['removed'])} entr{'y' if len(r['removed']) == 1 else 'ies'} "
                   f"({mib(r['freed_bytes'])}) from {r['cache']}"
                   + (f"; kept {len(r['kept'])}" + (" (current)" if stale else " (being built)") if r["kept"] else ""))


def main() -> None:
    try:
        app()
    finally:
        # The command is over and every file it wrote is closed: the interpreter's last collection of the
        # objects torch, Optuna and scikit-learn made would take about a second of every command's exit
        # (bench/parallel.py's command times); freezing them skips it. Finalizers and atexit still run.
        import gc

        gc.freeze()


if __name__ == "__main__":
    main()
