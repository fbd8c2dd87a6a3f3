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

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tune deep-learning hyperparameters the way a practitioner does by hand, overnight and at scale.",
)

EXIT_RUNTIME, EXIT_BAD_INPUT = 1, 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """One line on stderr and a non-zero exit: never a traceback."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    from tunectl.errors import TunectlError

    try:
        yield
    except TunectlError as e:
        fail(str(e), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except MemoryError:
        fail("out of memory; use a smaller batch_size or model", EXIT_RUNTIME)
    except OSError as e:
        fail(f"{e.strerror or e} ({e.filename or ''}); check the path, its permissions and free disk space", EXIT_RUNTIME)


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
    out: Annotated[Optional[Path], typer.Option("--out", help="run folder (default: studies/runs/<dataset>-<model>-<time>)")] = None,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    target: TargetOpt = None,
    task: TaskOpt = None,
    split: SplitOpt = None,
    image_size: ImageSizeOpt = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, mps (default: the best present)")] = None,
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
        out_dir.mkdir(parents=True, exist_ok=True)
        studies.write_text(out_dir / "config.yaml", studies.params_text(cfg, d))
        studies.write_json(out_dir / "history.json", {**hist.to_dict(), "task": splits.task, "config": cfg.to_dict(), "data": d})
        studies.write_json(out_dir / "split.json", splits.manifest)
        if hist.model is not None:
            save_checkpoint(out_dir / "model.pt", hist.checkpoint({"data": d, "manifest": splits.manifest}))
        result = {**hist.to_dict(), "out": str(out_dir)}
        if json_out:
            return print_json(result)
        train_summary(stdout, result, splits.task)
        if hist.status == "diverged":
            stdout.print("[yellow]The loss became NaN or infinite: lower lr (e.g. --set lr=1e-4) or check the inputs' scale.[/]")


StorageOpt = Annotated[Optional[str], typer.Option("--storage", help="Optuna storage URL (default: studies/<study>/study.db)")]
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
    sampler: Annotated[str, typer.Option("--sampler", help="tpe | random | grid | cmaes | qmc")] = "tpe",
    pruner: Annotated[str, typer.Option("--pruner", help="hyperband | halving | median | none")] = "hyperband",
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
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, mps (default: the best present)")] = None,
    artifacts: Annotated[Optional[Path], typer.Option("--artifacts", help="folder for the best trials' checkpoints, shared "
                         "by all workers (default: studies/<study>/artifacts)")] = None,
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
            name = study or studies.safe_name(f"{d['dataset']}-{Path(space).stem}")
            settings = TuneSettings(sp, d, name, storage, str(root), trials, parse_timeout(timeout), jobs, sampler,
                                    pruner, seed, heartbeat, base=base, device=device, artifacts=art)
        name = settings.study
        stdout, stderr = consoles(json_out)
        with TuneDisplay(stderr, name, trials) as display:
            summary = run_study(settings, on_progress=display.update)
        if json_out:
            return print_json(summary_json(summary))
        if summary["interrupted"]:
            stdout.print(f"[yellow]Stopped. Resume with the same command; the study is '{name}'.[/]")
        leaderboard(stdout, summary, importances(open_study(name, storage, root)))


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
    top: Annotated[int, typer.Option("--top", "-k", help="trials in the leaderboard")] = 10,
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
        if json_out:
            return print_json({**summary_json(summary), "importances": imp})
        leaderboard(consoles(False)[0], summary, imp)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
