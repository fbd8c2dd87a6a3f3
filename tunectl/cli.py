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
        from tunectl.train import batch_size_for

        batch_size_for(cfg, len(splits.x_train))  # refuse before any folder is made
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
