"""Predictions on new data (`tunectl predict`): the stored preprocessing, then the model, written whole.

The model comes from a study (its best complete trial, or --trial N) or from a folder that holds
a `model.pt` and its `split.json` (an export bundle, a `tunectl train` run folder). The split
manifest carries everything the inputs need before the model sees them: a table's
preprocessing record (`tables.py`: columns, types, categories, medians) and the training
split's scaling. Nothing is refitted on the new data.

The output is one row per input: an id (`--id COL` of a table, an image's path, else the row
number from 0), the prediction (a class name, or a number in the target's units) and, for
classification, each class's probability (`inference.Predictor`: what `export --format onnx`
writes too). It is written whole (`files.write_new`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from tunectl import files, studies
from tunectl.builders import is_reference
from tunectl.errors import ConfigError, DataError, StudyError

KINDS = "csv:PATH, parquet:PATH, npz:PATH (an array x) or folder:DIR (images)"


def check_out(out: Path | None, force: bool) -> None:
    """--out: a new file in a folder that exists (or --force over an old one), refused before any work."""
    if out is None:
        return
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name such as {out / 'predictions.csv'}")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist; create it or give another path")
    if out.exists() and not force:
        raise ConfigError(f"--out {out}: exists; give a new file, or add --force to replace it")


# ----------------------------------------------------------------------------- the model


def _manifest(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path.parent}: has a model.pt but no split.json; predict needs both (an export "
                          f"bundle or a run folder)") from None
    except (OSError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: not a readable split manifest ({str(e)[:80]}); export the trial again") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a split manifest; export the trial again")
    return doc


def load_source(source: str, trial: int | None, root: Path | str, storage: str | None):
    """(checkpoint, manifest, how to name the model) of a bundle or run folder, or of a study's trial."""
    from tunectl.models import load_checkpoint

    folder = Path(source)
    if folder.is_dir() and ((folder / "model.pt").exists() or (folder / "split.json").exists()):
        if trial is not None:
            raise ConfigError(f"--trial {trial}: {source} is one model (a bundle or run folder); drop --trial")
        ckpt = load_checkpoint(folder / "model.pt")
        manifest = _manifest(folder / "split.json")
        model = (ckpt.get("config") or {}).get("model")
        if is_reference(model):  # your own builder: the bundle's copy, if the original is not at its path
            file, _, function = model.rpartition(":")
            copy = folder / Path(file).name
            if file.endswith(".py") and not Path(file).is_file() and copy.is_file():
                ckpt = {**ckpt, "config": {**ckpt["config"], "model": f"{copy.resolve()}:{function}"}}
        return ckpt, manifest, str(folder)
    if folder.exists() or "/" in source:
        raise ConfigError(f"{source}: not an export bundle or run folder (no model.pt and split.json); give one, "
                          f"or a study name")
    from tunectl.evaluate import choose

    try:
        c = choose(source, trial, root, storage)
    except StudyError as e:
        if not str(e).startswith("no study"):
            raise
        raise StudyError(f"{e}; or give the folder of an export bundle or a run (model.pt + split.json)") from None
    n = c.record["number"]
    if c.checkpoint is None:
        kept = ", ".join(map(str, c.kept)) or "none"
        why = "its checkpoint file is missing" if c.record.get("checkpoint") else "it kept no weights"
        raise StudyError(f"trial {n} of '{source}': {why} (trials with weights: {kept}); choose one with --trial")
    return load_checkpoint(c.checkpoint), c.meta["manifest"], f"study '{source}', trial {n}"


# ----------------------------------------------------------------------------- the inputs


def read_inputs(dataset: str, manifest: dict[str, Any], input_shape: tuple[int, ...], id_column: str | None):
    """The new data as float32 model inputs, before scaling, and one id per row."""
    import numpy as np

    from tunectl.sources import _to_float32

    if not isinstance(dataset, str) or ":" not in dataset:
        raise DataError(f"--dataset {dataset!r}: give {KINDS}")
    kind = dataset.split(":", 1)[0]
    record = manifest.get("preprocessing")
    trained_on = manifest.get("dataset", "its data")
    if record is not None:
        from tunectl.tables import check_record, encode, read_for

        if kind not in ("csv", "parquet"):
            raise DataError(f"--dataset {dataset}: the model was trained on a table ({trained_on}); give "
                            f"csv:PATH or parquet:PATH with the same columns")
        record = check_record(record)
        frame, ids = read_for(record, dataset, id_column)
        x = _to_float32(encode(record, frame), dataset)
        return x, (list(ids) if ids is not None else list(range(len(x)))), id_column or "row"
    if id_column is not None:
        raise DataError(f"--id {id_column}: only for tables (the model was trained on {trained_on}); drop --id")
    if kind == "folder":
        if len(input_shape) != 3:
            raise DataError(f"--dataset {dataset}: images, but the model takes {input_shape[0]} features "
                            f"({trained_on}); give npz:PATH with an array x")
        x, ids = _images(Path(dataset.split(":", 1)[1]), input_shape)
        return x, ids, "file"
    if kind == "npz":
        x = _npz_x(Path(dataset.split(":", 1)[1]), dataset)
        if x.ndim == 3 and len(input_shape) == 3 and input_shape[0] == 1:
            x = x[:, None]  # N x H x W: one-channel images
        if tuple(x.shape[1:]) != tuple(input_shape):
            raise DataError(f"{dataset}: x has shape {tuple(x.shape)} but the model takes N x "
                            f"{' x '.join(map(str, input_shape))} ({trained_on}); give inputs of that shape")
        return _to_float32(np.asarray(x, dtype=np.float64 if x.dtype.itemsize > 4 else np.float32), dataset), \
            list(range(len(x))), "row"
    what = "npz:PATH with an array x, or folder:DIR" if len(input_shape) == 3 else "npz:PATH with an array x"
    raise DataError(f"--dataset {dataset}: the model was trained on {trained_on}, not a table; give {what}")


def _npz_x(path: Path, where: str):
    import zipfile
    import zlib

    import numpy as np

    if not path.is_file():
        raise DataError(f"{where}: no such file" + (" (a folder)" if path.is_dir() else ""))
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise DataError(f"{where}: not a .npz archive; save it with np.savez(PATH, x=x)")
        with z:
            if "x" not in z:
                raise DataError(f"{where}: needs an array named 'x' (found: {', '.join(z.files[:10]) or 'nothing'}); "
                                f"save it with np.savez(PATH, x=x)")
            x = z["x"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise DataError(f"{where}: not a readable .npz file ({str(e)[:80]}); save it with np.savez(PATH, x=x)") from None
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating) or not len(x):
        raise DataError(f"{where}: x must be a real numeric array of one row per example (got {x.dtype}, shape "
                        f"{x.shape})")
    return x


def _images(root: Path, input_shape: tuple[int, ...]):
    """Every image under `root` (sub-folders too, sorted by path), as the model's channels and size."""
    import torch
    from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader
    from torchvision.transforms import v2

    if not root.is_dir():
        raise DataError(f"folder:{root}: no such folder; give the folder that holds the images")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not paths:
        raise DataError(f"folder:{root}: no images ({', '.join(IMG_EXTENSIONS[:4])}, ...) in it or below")
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Resize(list(input_shape[1:]), antialias=True)]
    if input_shape[0] == 1:
        steps.insert(1, v2.Grayscale(1))
    transform = v2.Compose(steps)
    images = []
    for p in paths:
        try:
            images.append(transform(default_loader(str(p))))  # PIL, as RGB: as torchvision's ImageFolder reads them
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
            raise DataError(f"folder:{root}: cannot read image {p} ({type(e).__name__}); remove or replace it") from None
    if images[0].shape[0] != input_shape[0]:
        raise DataError(f"folder:{root}: images have {images[0].shape[0]} channels but the model takes "
                        f"{input_shape[0]}; give images like the training ones")
    return torch.stack(images), [str(p.relative_to(root)) for p in paths]


# ----------------------------------------------------------------------------- predict


def predict(source: str, dataset: str, out: Path | str | None = None, trial: int | None = None,
            root: Path | str = studies.ROOT, storage: str | None = None, id_column: str | None = None,
            device: str | None = None, force: bool = False) -> dict[str, Any]:
    """Predict every row (or image) of `dataset` with the model of `source`; write `out` whole."""
    from tunectl.inference import predictor, run
    from tunectl.models import model_from_checkpoint
    from tunectl.train import pick_device

    out = Path(out) if out is not None else None
    check_out(out, force)
    dev = pick_device(device)  # an unknown or absent device: one line before any work
    ckpt, manifest, name = load_source(source, trial, root, storage)
    shape, task = tuple(ckpt["input_shape"]), ckpt.get("task") or manifest.get("task")
    model, _ = model_from_checkpoint(ckpt)
    pred = predictor(model, manifest, task, name)  # the scaling as stored, then the model, then the head
    x, ids, id_name = read_inputs(dataset, manifest, shape, id_column)
    if tuple(x.shape[1:]) != shape:
        raise DataError(f"{dataset}: gives inputs of shape {tuple(x.shape[1:])} but the model takes {shape}")
    y = run(pred, x, dev)
    if task == "regression":
        labels: list[str] = []
        columns = [id_name, "prediction"]
        rows = [{id_name: i, "prediction": v} for i, v in zip(ids, y[:, 0].double().tolist())]
    else:
        labels = list(manifest.get("labels") or [str(i) for i in range(y.shape[1])])
        columns = [id_name, "prediction", *(f"prob_{c}" for c in labels)]
        rows = [{id_name: i, "prediction": labels[b], **{f"prob_{c}": p for c, p in zip(labels, ps)}}
                for i, b, ps in zip(ids, y.argmax(1).tolist(), y.double().tolist())]
    if out is not None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        files.write_new(out, buf.getvalue(), force)
    return {"model": name, "dataset": dataset, "task": task, "n": len(rows), "out": str(out) if out else None,
            "columns": columns, "labels": labels, "predictions": rows}
