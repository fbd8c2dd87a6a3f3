"""Data sources: read a data set from where it lives (scikit-learn, torchvision, a folder, a table, an npz) into tensors.

`load_dataset(spec)` returns a `Dataset` (x, y, the task inferred from the targets, the class
names) or refuses the input with one DataError line that says how to fix it. Splitting,
scaling and the manifest are `data.py`'s. A table (csv:, parquet:) is read by `tables.py`; its
features are encoded once the split is known (`data.make_splits`), from the training rows only.
"""

from __future__ import annotations

import math
import gzip
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunectl.errors import DataError

EMBEDDED = {
    "digits": "scikit-learn: 1,797 handwritten digits as 1x8x8 images, 10 classes",
    "breast_cancer": "scikit-learn: 569 tumours, 30 features, binary",
    "wine": "scikit-learn: 178 wines, 13 features, 3 classes",
    "iris": "scikit-learn: 150 flowers, 4 features, 3 classes",
    "diabetes": "scikit-learn: 442 patients, 10 features, regression (disease progression)",
}

TORCHVISION = {
    "mnist": "torchvision: 70,000 handwritten digits, 1x28x28 (--data-dir, --download)",
    "fashion_mnist": "torchvision: 70,000 clothing images, 1x28x28 (--data-dir, --download)",
    "cifar10": "torchvision: 60,000 colour images, 3x32x32, 10 classes (--data-dir, --download)",
}

PREFIXED = {
    "folder:DIR": "torchvision ImageFolder: one sub-folder per class (--image-size to resize)",
    "csv:PATH": "a CSV file with a header row (--target COLUMN; text columns one-hot, missing values filled; --sequence COLUMN: text)",
    "parquet:PATH": "a Parquet file, read like a CSV (--target COLUMN, --drop, --categorical, --numeric, --dropna)",
    "npz:PATH": "a NumPy .npz file with arrays x and y (N x T x F: sequences)",
    "py:FILE.py:FUNCTION": "your own loader: FUNCTION() returns (x, y) or (x, y, task); x of N x H x W is images",
}

TASKS = ("binary", "multiclass", "regression")

@dataclass(frozen=True)
class DataSpec:
    """Where the data come from and how to read them: everything but the split."""

    name: str = "digits"
    data_dir: str = "data"
    download: bool = False
    target: str | None = None  # csv: the target column
    task: str | None = None  # force binary | multiclass | regression
    image_size: int | None = None  # folder: resize every image to this square size
    sequence: str | None = None  # csv: the text column read as characters (sequences.py)
    as_sequence: bool = False  # read the data as sequences: an image as H steps of W features (sequences.py)

    drop: str | None = None  # csv:/parquet: columns left out, "id,name"
    categorical: str | None = None  # csv:/parquet: columns one-hot encoded whatever their values look like
    numeric: str | None = None  # csv:/parquet: columns read as numbers whatever their values look like
    dropna: bool = False  # csv:/parquet: drop incomplete rows instead of filling them


    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v is not False and k != "download"}

@dataclass
class Dataset:
    x: torch.Tensor  # float32, N x features or N x C x H x W
    y: torch.Tensor  # int64 class indices, or float32 regression targets
    task: str
    name: str
    classes: list[str] = field(default_factory=list)
    is_image: bool = False
    flips_ok: bool = False  # may augmentation mirror the images? (not for digits)
    sequence: str = ""  # "" | floats (N x T x F) | tokens (N x T ids, 0 = padding) | chars (code points): sequences.py
    vocab: int = 0  # tokens: the number of token ids (the embedding's rows)
    integer: bool = False  # x came as integers (an npz): --as-sequence reads N x T of them as token ids
    pixels: str | None = None  # images read as bytes: how they become floats (pixels.CONVERSIONS); x is uint8 until then
    x_digest: str | None = None  # the float32 data hash, when the folder cache computed it already
    pages: Any = None  # x's mapping of the folder cache (cache.Pages): readers give back the pages they copied
    table: Any = None  # csv:/parquet: the tables.Table whose encoding make_splits fits (x is N x 0 until then)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

MAX_IMAGE_SIZE = 1024  # --image-size: 1024 x 1024 x 3 floats are 12 MB an image already

FLOAT32_MAX = float(np.finfo(np.float32).max)

def _short(value: Any, limit: int = 100) -> str:
    from tunectl.config import short

    return short(value, limit)

def _plain(text: str, limit: int = 100) -> str:
    """A file name or an error text, unquoted, cut to `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

def check_image_size(image_size: Any) -> None:
    """--image-size (or a params file's data.image_size): a whole number of pixels, 1..1024."""
    if image_size is None:
        return
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise DataError(f"--image-size {_short(image_size)}: must be a whole number of pixels between 1 and "
                        f"{MAX_IMAGE_SIZE}, e.g. --image-size 64")

def load_dataset(spec: DataSpec, raw: bool = False) -> Dataset:
    """The data set `spec` names. raw: image data read as bytes stay uint8 (x) with `pixels` saying how
    they become floats (see pixels.py); otherwise x is float32, converted exactly that way."""
    name = spec.name
    if not isinstance(name, str) or not name:
        raise DataError(f"data set {_short(name)}: give a name such as digits, csv:PATH or npz:PATH "
                        f"(see `tunectl datasets`)")
    check_image_size(spec.image_size)
    if name in EMBEDDED:
        ds = _load_sklearn(name)
    elif name in TORCHVISION:
        ds = _load_torchvision(name, Path(spec.data_dir), spec.download)
    elif name.startswith("folder:"):
        ds = _load_folder(Path(name.removeprefix("folder:")), spec.image_size)
    elif name.startswith(("csv:", "parquet:")):
        ds = _load_table(spec)
    elif name.startswith("npz:"):
        ds = _load_npz(Path(name.removeprefix("npz:")))
    elif name.startswith("py:"):
        ds = _load_py(name.removeprefix("py:"))
    else:
        known = ", ".join([*EMBEDDED, *TORCHVISION, *PREFIXED])
        raise DataError(f"unknown data set {_short(name)}; use one of: {known} (see `tunectl datasets`)")
    if ds.table is None:
        for option, value in (("--drop", spec.drop), ("--categorical", spec.categorical), ("--numeric", spec.numeric),
                              ("--dropna", spec.dropna or None)):
            if value is not None:
                raise DataError(f"{option}: only for tables (csv:PATH, parquet:PATH), not {_short(name)}; drop it")
    if spec.task is not None:
        ds = _force_task(ds, spec.task)
    _check(ds)
    if ds.pixels and not raw:  # the float32 path: the whole data set as floats, as before
        from tunectl.pixels import to_float

        _check_memory(name, len(ds.x), ds.x[0].numel(), spec.image_size)
        ds = replace(ds, x=to_float(torch.as_tensor(ds.x), ds.pixels), pages=None)  # the mapping is not needed now
    return ds

def _load_sklearn(name: str) -> Dataset:
    from sklearn import datasets as skd

    loader = {
        "digits": skd.load_digits,
        "breast_cancer": skd.load_breast_cancer,
        "wine": skd.load_wine,
        "iris": skd.load_iris,
        "diabetes": skd.load_diabetes,
    }[name]
    bunch = loader()
    if name == "digits":
        x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # 1x8x8, pixels 0..16
        return Dataset(x, torch.tensor(bunch.target), "multiclass", name, [str(c) for c in range(10)], True)
    if name == "diabetes":
        return Dataset(_f32(bunch.data), _f32(bunch.target), "regression", name)
    classes = [str(c) for c in bunch.target_names]
    task = "binary" if len(classes) == 2 else "multiclass"
    return Dataset(_f32(bunch.data), torch.tensor(bunch.target), task, name, classes)

def _f32(a: Any) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float32))

class _Missing(Exception):
    pass

def _load_torchvision(name: str, root: Path, download: bool) -> Dataset:
    from torchvision import datasets as tvd

    def part(train: bool):
        if name == "cifar10":
            return _CIFAR10(str(root), train=train, download=download)
        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        return cls(str(root), train=train, download=download)

    if root.exists() and not root.is_dir():
        raise DataError(f"{name}: --data-dir {root} is a file, not a folder; give the folder that holds (or will "
                        f"hold) the data set")
    xs, ys, classes = [], [], None
    for train in (True, False):
        try:
            d = part(train)
        except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True ..."
            if "not found" in str(e).lower() or "corrupted" in str(e).lower():
                continue
            raise DataError(f"{name}: cannot read {root}: {e}") from None
        except OSError as e:
            raise DataError(f"{name}: cannot download or read into {root}: {e}") from None
        data = torch.as_tensor(np.asarray(d.data))
        xs.append(data.permute(0, 3, 1, 2) if data.ndim == 4 else data.unsqueeze(1))
        ys.append(torch.as_tensor(np.asarray(d.targets), dtype=torch.int64))
        classes = list(d.classes)
    if not xs and name != "cifar10":
        # the raw idx files side by side (as the MNIST site ships them, gz or not)
        for prefix in ("train", "t10k"):
            img = _first_existing(root, f"{prefix}-images-idx3-ubyte")
            lab = _first_existing(root, f"{prefix}-labels-idx1-ubyte")
            if img and lab:
                xs.append(_read_idx(img, 3).unsqueeze(1))
                ys.append(_read_idx(lab, 1).to(torch.int64))
        classes = list(tvd.MNIST.classes if name == "mnist" else tvd.FashionMNIST.classes)
    if not xs:
        raise DataError(f"{name}: no data in {root.resolve()}; pass --download to fetch it, or --data-dir DIR")
    x = torch.cat(xs)  # uint8: divided by 255 per mini-batch (raw) or here (load_dataset)
    return Dataset(x, torch.cat(ys), "multiclass", name, [str(c) for c in classes], True, name != "mnist", pixels="/255")

def _read_idx(path: Path, ndim: int) -> torch.Tensor:
    """A uint8 idx file (MNIST's format), gzipped or not. torchvision's reader opens
    the file as is and fails on the .gz files the MNIST site ships."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e}); download it again") from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else 0
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=min(len(raw), 4 + 4 * ndim))
    if magic != 0x0800 + ndim or data.size != math.prod(dims):
        raise DataError(f"{path}: not a {ndim}-d uint8 idx file (or truncated); download it again")
    return torch.from_numpy(data.copy()).reshape(dims)

def _first_existing(root: Path, stem: str) -> Path | None:
    for p in (root / stem, root / f"{stem}.gz"):
        if p.is_file():
            return p
    return None

def _cifar_class():
    from torchvision.datasets import CIFAR10

    class TolerantCIFAR10(CIFAR10):
        # torchvision checks each file's md5; we check that the files exist and let the
        # real reader parse them, so a truncated file still fails loudly on reading,
        # and the tests can use tiny files in the real pickle-batch format.
        def _check_integrity(self) -> bool:
            base = Path(self.root) / self.base_folder
            return all((base / f).is_file() for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:  # torchvision md5-checks batches.meta too
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return TolerantCIFAR10

def _CIFAR10(root: str, train: bool, download: bool):
    return _cifar_class()(root, train=train, download=download)

def _load_folder(root: Path, image_size: int | None) -> Dataset:
    """Decoded once into the cache (cache.py), then mapped: uint8 images, converted as torchvision's
    ToDtype(float32, scale=True) converts them (the float32 path's numbers, bit for bit)."""
    from torchvision.transforms import v2

    from tunectl import cache
    from tunectl.pixels import float_digest

    where = f"folder:{root}"
    if not root.is_dir():
        raise DataError(f"{where}: no such folder; give a folder with one sub-folder per class")
    try:
        folder = cache.scan(root)
        key = cache.fingerprint(root, folder.samples, folder.classes, image_size)
    except (FileNotFoundError, OSError) as e:  # e.g. no images: torchvision names the extensions it reads
        raise DataError(f"{where}: {e}; put the images in one sub-folder per class") from None
    steps = [v2.PILToTensor()]  # uint8 C x H x W; a resize works on the PIL image, as before
    if image_size:
        steps.insert(0, v2.Resize((image_size, image_size), antialias=True))
    transform = v2.Compose(steps)

    def decode(i: int) -> np.ndarray:
        file = folder.samples[i][0]
        try:
            return transform(folder.loader(file)).numpy()
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, DecompressionBombError ...
            raise DataError(f"{where}: cannot read image {_plain(file, 160)} ({type(e).__name__}: "
                            f"{_plain(str(e), 80)}); remove or replace that file") from None

    describe = {"source": str(root.resolve()), "image_size": image_size, "classes": list(folder.classes)}
    entry = cache.load_or_build(where, key, len(folder.samples), folder.targets, decode, describe,
                                finish=lambda images: {"x_digest": float_digest(torch.from_numpy(images), "*1/255")})
    x = torch.from_numpy(entry.images)
    y = torch.from_numpy(np.asarray(entry.labels, dtype=np.int64))
    task = "binary" if len(folder.classes) == 2 else "multiclass"
    return Dataset(x, y, task, where, list(folder.classes), True, True, pixels="*1/255",
                   x_digest=entry.manifest.get("x_digest"), pages=entry.pages)

def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None

def _check_memory(where: str, n: int, numel: int, image_size: int | None) -> None:
    """The images as float32 tensors must fit in (half of) the free memory: refuse before the OOM killer."""
    need, free = 4 * n * numel, _available_memory()
    if free is not None and need > free // 2:
        fix = "use a smaller --image-size" if image_size else "pass --image-size N to shrink them"
        raise DataError(f"{where}: {n} images of {numel} values need {need / 2**30:.1f} GiB as float32, more than half "
                        f"of the {free / 2**30:.1f} GiB free; {fix}")

def _load_table(spec: DataSpec) -> Dataset:
    """csv:PATH or parquet:PATH: the targets here; the features stay a table until the split is known."""
    from tunectl.tables import read_table

    t = read_table(spec.name, spec.target, spec.drop, spec.categorical, spec.numeric, spec.dropna)
    y, classes, task = _targets(t.target_values, spec.name)
    return Dataset(torch.zeros((len(y), 0)), y, task, spec.name, classes, table=t)

def _to_float32(a: np.ndarray, where: str) -> torch.Tensor:
    """Features as float32, refusing what float32 cannot hold (rather than turning it into inf)."""
    if a.size and np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise DataError(f"{where}: features contain NaN or infinite values; drop or fill those rows")
        if a.dtype.itemsize > 4:
            big = float(np.max(np.abs(a)))
            if big > FLOAT32_MAX:
                raise DataError(f"{where}: a feature value of {big:.3g} is too large for float32 (at most about "
                                f"3.4e38); rescale that column (e.g. divide it by a power of ten, or take its log)")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

def _load_npz(path: Path) -> Dataset:
    import zipfile
    import zlib

    where = f"npz:{path}"
    if path.is_dir():
        raise DataError(f"{where}: is a folder, not a .npz file; give the file's path")
    if not path.is_file():
        raise DataError(f"{where}: no such file")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic == b"\x93NUMPY":
            raise DataError(f"{where}: is a single .npy array, not a .npz archive; save it with "
                            f"np.savez(PATH, x=x, y=y)")
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise DataError(f"{where}: not a .npz archive; save it with np.savez(PATH, x=x, y=y)")
        with z:
            if "x" not in z or "y" not in z:
                found = ", ".join(_plain(n, 40) for n in z.files[:10]) or "nothing"
                raise DataError(f"{where}: needs arrays named 'x' and 'y' (found: {found})")
            x, y = z["x"], z["y"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise DataError(f"{where}: not a readable .npz file ({_short(str(e))}); save it with "
                        f"np.savez(PATH, x=x, y=y)") from None
    return _from_arrays(x, y, where)


def _load_py(ref: str) -> Dataset:
    """`py:FILE.py:FUNCTION`: your own loader returns (x, y) or (x, y, task), arrays or tensors; from
    there on they are read as an npz's are. x of N x H x W is one-channel images."""
    from tunectl.builders import load_data, resolve

    where = f"py:{ref}"
    x, y, task = load_data(resolve(ref))
    try:
        x, y = (np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a) for a in (x, y))
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: x and y must be arrays or tensors ({_short(str(e))})") from None
    if x.ndim == 3:  # N x H x W: one-channel images, like N x 1 x H x W
        x = x[:, None]
    ds = _from_arrays(x, y, where)
    return _force_task(ds, task) if task else ds


def _from_arrays(x: np.ndarray, y: np.ndarray, where: str) -> Dataset:
    """Arrays x (N x features, or N x C x H x W images) and y (N targets) -> a Dataset, or one line why not."""
    for label, a in (("x", x), ("y", y)):
        if a.ndim == 0:
            raise DataError(f"{where}: {label} is a single value (0-d), not one row per example; "
                            f"save {'x as examples x features' if label == 'x' else 'y as one target per example'}")
        if np.issubdtype(a.dtype, np.complexfloating):
            raise DataError(f"{where}: {label} holds complex numbers; store the real and imaginary parts as "
                            f"separate real columns")
    if x.ndim == 1:
        raise DataError(f"{where}: x is 1-D (shape {x.shape}); give examples x features, e.g. x.reshape(-1, 1) "
                        f"for a single feature")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # a column vector: one target per example all the same
    if y.ndim != 1:
        raise DataError(f"{where}: y has shape {y.shape}; give one target per example (1-D, shape ({len(y)},))")
    if len(x) != len(y):
        raise DataError(f"{where}: x has {len(x)} rows but y has {len(y)}; they must match")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: x must be numeric, got {x.dtype}")
    if x.size == 0 and len(x):
        raise DataError(f"{where}: x has shape {x.shape}: no feature to learn from; add features")
    yt, classes, task = _targets(y, where)
    is_image = x.ndim == 4
    integer = bool(np.issubdtype(x.dtype, np.integer))  # --as-sequence reads N x T integers as token ids
    if is_image and x.dtype == np.uint8:  # images as bytes: kept as bytes, their float32 values unscaled
        return Dataset(torch.from_numpy(np.ascontiguousarray(x)), yt, task, where, classes, True, pixels="float",
                       integer=integer)
    return Dataset(_to_float32(x, where), yt, task, where, classes, is_image, integer=integer)

def _targets(y: np.ndarray, where: str = "data") -> tuple[torch.Tensor, list[str], str]:
    """Infer the task from the targets: numbers with many distinct values are regression."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.complexfloating):
        raise DataError(f"{where}: targets are complex numbers; give real targets")
    numeric = None
    try:
        numeric = y.astype(np.float64)
    except (ValueError, TypeError):
        pass
    if numeric is not None:
        if not np.all(np.isfinite(numeric)):
            raise DataError(f"{where}: targets contain NaN or infinite values; drop or fill those rows")
        values = np.unique(numeric)
        integral = np.all(numeric == np.round(numeric))
        if not integral or len(values) > max(20, int(0.05 * len(numeric))):
            if np.max(np.abs(numeric)) > FLOAT32_MAX:
                raise DataError(f"{where}: a target of {np.max(np.abs(numeric)):.3g} is too large for float32 "
                                f"(at most about 3.4e38); rescale the targets")
            return torch.tensor(numeric, dtype=torch.float32), [], "regression"
        labels = [str(int(v)) for v in values]
        inverse = np.searchsorted(values, numeric)
    else:
        values, inverse = np.unique(y.astype(str), return_inverse=True)
        labels = [str(v) for v in values]
    return torch.tensor(inverse, dtype=torch.int64), labels, "binary" if len(labels) == 2 else "multiclass"

def _force_task(ds: Dataset, task: str) -> Dataset:
    if task not in TASKS:
        raise DataError(f"--task {task!r}: use one of {', '.join(TASKS)}")
    if task == ds.task:
        return ds
    if task == "regression":
        try:
            y = ds.y.to(torch.float32) if not ds.classes else torch.tensor([float(c) for c in ds.classes])[ds.y]
        except ValueError:
            raise DataError(f"--task regression: the targets are class names ({', '.join(ds.classes[:3])}, ...), "
                            f"not numbers; drop --task or give numeric targets") from None
        return replace(ds, y=y, task=task, classes=[])
    if ds.task == "regression":  # each (rounded) value becomes a class; _targets would call them regression again
        values, inverse = np.unique(np.round(ds.y.numpy()).astype(np.int64), return_inverse=True)
        y, classes = torch.tensor(inverse, dtype=torch.int64), [str(v) for v in values]
    else:
        y, classes = ds.y, ds.classes
    if task == "binary" and len(classes) != 2:
        raise DataError(f"--task binary: the targets have {len(classes)} classes, not 2")
    return replace(ds, y=y, task=task, classes=classes)

def _check(ds: Dataset) -> None:
    if len(ds.x) == 0:
        raise DataError(f"{ds.name}: the data set is empty")
    if ds.x[0].numel() == 0 and ds.table is None:
        raise DataError(f"{ds.name}: the examples have no features (shape {tuple(ds.x.shape[1:])}); add features")
    if ds.x.dtype != torch.uint8 and not torch.isfinite(ds.x).all():  # bytes are always finite
        raise DataError(f"{ds.name}: features contain NaN or infinite values; drop or fill those rows")
    if ds.task == "regression" and not torch.isfinite(ds.y).all():
        raise DataError(f"{ds.name}: targets contain NaN or infinite values; drop or fill those rows")
    if ds.task != "regression" and len(torch.unique(ds.y)) < 2:
        raise DataError(f"{ds.name}: only one class in the targets; a classifier needs at least two")

def describe() -> list[tuple[str, str]]:
    return [*EMBEDDED.items(), *TORCHVISION.items(), *PREFIXED.items()]
