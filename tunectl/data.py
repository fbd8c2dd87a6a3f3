"""Data sets, task inference and the train/dev/test split.

A data set is loaded once into memory as tensors (`Dataset`); `make_splits` cuts it
into train/dev/test with a seeded, stratified split and returns `Splits`, which
carries a manifest (seed, sizes, hash of each split's indices, hash of the data) so a
later run can prove it used the same split. Scaling statistics come from the
training examples only, so nothing about dev or test leaks into training.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import os
import pickle
from dataclasses import dataclass, field
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
    "csv:PATH": "a CSV file with a header row (--target COLUMN)",
    "npz:PATH": "a NumPy .npz file with arrays x and y",
}
TASKS = ("binary", "multiclass", "regression")
DEV_TEST_FRACTION = 0.2  # dev and test each get 20% of the examples ...
DEV_TEST_CAP = 10_000  # ... but no more than 10,000 each, so a million examples split ~98/1/1


@dataclass(frozen=True)
class DataSpec:
    """Where the data come from and how to read them: everything but the split."""

    name: str = "digits"
    data_dir: str = "data"
    download: bool = False
    target: str | None = None  # csv: the target column
    task: str | None = None  # force binary | multiclass | regression
    image_size: int | None = None  # folder: resize every image to this square size

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and k != "download"}


@dataclass
class Dataset:
    x: torch.Tensor  # float32, N x features or N x C x H x W
    y: torch.Tensor  # int64 class indices, or float32 regression targets
    task: str
    name: str
    classes: list[str] = field(default_factory=list)
    is_image: bool = False
    flips_ok: bool = False  # may augmentation mirror the images? (not for digits)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass
class Splits:
    """Train/dev/test tensors (scaled with training statistics) and the split manifest."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_dev: torch.Tensor
    y_dev: torch.Tensor
    task: str
    input_shape: tuple[int, ...]
    out_dim: int  # 1 for binary and regression, k for k classes
    manifest: dict[str, Any]
    is_image: bool = False
    flips_ok: bool = False
    y_scale: float = 1.0  # regression: targets are standardized; errors are reported in the target's units
    classes: list[str] = field(default_factory=list)
    _test: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test split. Sealed (absent) while tuning: only `evaluate` may open it."""
        if self._test is None:
            raise RuntimeError("the test split is sealed: only `tunectl evaluate` looks at it")
        return self._test

    @property
    def target_spread(self) -> float:
        """Standard deviation of the training targets (regression), for relative thresholds."""
        return self.y_scale


# ----------------------------------------------------------------------------- loading


MAX_IMAGE_SIZE = 1024  # --image-size: 1024 x 1024 x 3 floats are 12 MB an image already
MAX_SEED = 2**32 - 1  # NumPy and scikit-learn take 32-bit seeds
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


def check_split_seed(seed: Any) -> None:
    """--split-seed: scikit-learn's and NumPy's seeds are 32-bit, 0..4294967295."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise DataError(f"--split-seed {_short(seed)}: must be a whole number between 0 and {MAX_SEED}, "
                        f"e.g. --split-seed 0")


def check_data_settings(data: dict[str, Any]) -> dict[str, Any]:
    """A params file's `data:` section, each value of the type `tunectl train` gives it (null: not set).

    Raises DataError naming the key ('data.split_seed: ...'); the caller adds the file's name."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        where = f"data.{key}"
        if key in ("dataset", "data_dir", "target", "task"):
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}: expected a name, got {_short(value)}"
                                + (", e.g. dataset: digits" if key == "dataset" else ""))
            if key == "task" and value not in TASKS:
                raise DataError(f"{where}: {_short(value)} is not one of {', '.join(TASKS)}")
        elif key == "image_size":
            try:
                check_image_size(value)
            except DataError:
                raise DataError(f"{where}: expected a whole number of pixels between 1 and {MAX_IMAGE_SIZE}, "
                                f"got {_short(value)}") from None
        elif key == "split_seed":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
                raise DataError(f"{where}: expected a whole number between 0 and {MAX_SEED}, got {_short(value)}")
        elif key == "train_fraction":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise DataError(f"{where}: expected a fraction in (0, 1], got {_short(value)}")
        elif key == "split":
            ok = isinstance(value, str) or (isinstance(value, list) and len(value) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
            if not ok:
                raise DataError(f"{where}: expected three fractions train,dev,test such as [0.8, 0.1, 0.1], "
                                f"got {_short(value)}")
            try:
                parse_split(value if isinstance(value, str) else ",".join(map(str, value)))
            except DataError as e:
                raise DataError(f"{where}: {str(e).split(': ', 1)[1]}") from None
        out[key] = value
    return out


def load_dataset(spec: DataSpec) -> Dataset:
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
    elif name.startswith("csv:"):
        ds = _load_csv(Path(name.removeprefix("csv:")), spec.target)
    elif name.startswith("npz:"):
        ds = _load_npz(Path(name.removeprefix("npz:")))
    else:
        known = ", ".join([*EMBEDDED, *TORCHVISION, *PREFIXED])
        raise DataError(f"unknown data set {_short(name)}; use one of: {known} (see `tunectl datasets`)")
    if spec.task is not None:
        ds = _force_task(ds, spec.task)
    _check(ds)
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
    x = torch.cat(xs).to(torch.float32) / 255.0
    return Dataset(x, torch.cat(ys), "multiclass", name, [str(c) for c in classes], True, name != "mnist")


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
    from torchvision import datasets as tvd
    from torchvision.transforms import v2

    if not root.is_dir():
        raise DataError(f"folder:{root}: no such folder; give a folder with one sub-folder per class")
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if image_size:
        steps.insert(0, v2.Resize((image_size, image_size), antialias=True))
    try:
        folder = tvd.ImageFolder(str(root), transform=v2.Compose(steps))
    except (FileNotFoundError, OSError) as e:  # e.g. no images: torchvision names the extensions it reads
        raise DataError(f"folder:{root}: {e}; put the images in one sub-folder per class") from None
    images = []
    for i, (file, _) in enumerate(folder.samples):
        try:
            image = folder[i][0]
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, DecompressionBombError ...
            raise DataError(f"folder:{root}: cannot read image {_plain(file, 160)} ({type(e).__name__}: "
                            f"{_plain(str(e), 80)}); remove or replace that file") from None
        if i == 0:
            _check_memory(f"folder:{root}", len(folder), image.numel(), image_size)
        images.append(image)
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"folder:{root}: images have mixed sizes {sorted(shapes)[:3]}; pass --image-size N to resize them"
        )
    x = torch.stack(images)
    y = torch.tensor(folder.targets, dtype=torch.int64)
    task = "binary" if len(folder.classes) == 2 else "multiclass"
    return Dataset(x, y, task, f"folder:{root}", list(folder.classes), True, True)


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


def _load_csv(path: Path, target: str | None) -> Dataset:
    where = f"csv:{path}"
    if path.is_dir():
        raise DataError(f"{where}: is a folder, not a CSV file; give the file's path")
    if not path.is_file():
        raise DataError(f"{where}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not part of a name
            reader = csv.reader(f)
            rows, lines = [], []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line (a trailing one, most often) holds no example
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                        f"save it as UTF-8") from None
    except csv.Error as e:  # a NUL byte, a field past the csv module's size limit
        raise DataError(f"{where}: not a readable CSV file ({_short(str(e))}); check the file") from None
    if len(rows) < 2:
        raise DataError(f"{where}: needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    columns = ", ".join(h if len(h) <= 40 else h[:37] + "..." for h in header[:30]) + (", ..." if len(header) > 30 else "")
    if target is None:
        raise DataError(f"{where}: say which column to predict with --target COLUMN (columns: {columns})")
    if target not in header:
        raise DataError(f"{where}: no column {_short(target)}; --target must be one of: {columns}")
    if header.count(target) > 1:
        raise DataError(f"{where}: {header.count(target)} columns are named {_short(target)}; rename them so that "
                        f"--target names one")
    if len(header) < 2:
        raise DataError(f"{where}: has only the target column {_short(target)} and no feature to learn from; "
                        f"add feature columns")
    t = header.index(target)
    for row, line in zip(body, lines[1:]):
        if len(row) != len(header):
            raise DataError(f"{where}: line {line} has {len(row)} cells but the header has {len(header)}; "
                            f"fix that row (a missing or extra comma?)")
    feats = np.empty((len(body), len(header) - 1), dtype=np.float64)
    names = [h for i, h in enumerate(header) if i != t]
    for r, (row, line) in enumerate(zip(body, lines[1:])):
        for j, v in enumerate(c for i, c in enumerate(row) if i != t):
            try:
                feats[r, j] = float(v)
            except ValueError:
                raise DataError(f"{where}: line {line}, column {_short(names[j], 40)}: {_short(v.strip(), 40)} is "
                                f"not a number; feature columns must be numbers (encode them first)") from None
    labels = [r[t].strip() for r in body]
    y, classes, task = _targets(np.array(labels, dtype=object), where)
    return Dataset(_to_float32(feats, where), y, task, where, classes)


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
    return Dataset(_to_float32(x, where), yt, task, where, classes, is_image)


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
        return Dataset(ds.x, y, task, ds.name, [], ds.is_image, ds.flips_ok)
    if ds.task == "regression":  # each (rounded) value becomes a class; _targets would call them regression again
        values, inverse = np.unique(np.round(ds.y.numpy()).astype(np.int64), return_inverse=True)
        y, classes = torch.tensor(inverse, dtype=torch.int64), [str(v) for v in values]
    else:
        y, classes = ds.y, ds.classes
    if task == "binary" and len(classes) != 2:
        raise DataError(f"--task binary: the targets have {len(classes)} classes, not 2")
    return Dataset(ds.x, y, task, ds.name, classes, ds.is_image, ds.flips_ok)


def _check(ds: Dataset) -> None:
    if len(ds.x) == 0:
        raise DataError(f"{ds.name}: the data set is empty")
    if ds.x[0].numel() == 0:
        raise DataError(f"{ds.name}: the examples have no features (shape {tuple(ds.x.shape[1:])}); add features")
    if not torch.isfinite(ds.x).all():
        raise DataError(f"{ds.name}: features contain NaN or infinite values; drop or fill those rows")
    if ds.task == "regression" and not torch.isfinite(ds.y).all():
        raise DataError(f"{ds.name}: targets contain NaN or infinite values; drop or fill those rows")
    if ds.task != "regression" and len(torch.unique(ds.y)) < 2:
        raise DataError(f"{ds.name}: only one class in the targets; a classifier needs at least two")


# ----------------------------------------------------------------------------- splitting


def split_sizes(n: int, ratios: tuple[float, float, float] | None) -> tuple[int, int, int]:
    if ratios is None:
        dev = min(DEV_TEST_CAP, round(DEV_TEST_FRACTION * n))
        test = dev
    else:
        dev, test = round(ratios[1] * n), round(ratios[2] * n)
    return n - dev - test, dev, test


def parse_split(text: str) -> tuple[float, float, float]:
    if not isinstance(text, str):
        raise DataError(f"--split {_short(text)}: give three positive fractions train,dev,test, e.g. --split 0.8,0.1,0.1")
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(not (math.isfinite(p) and p > 0) for p in parts):
        raise DataError(f"--split {_short(text)}: give three positive fractions train,dev,test, e.g. --split 0.8,0.1,0.1")
    if abs(sum(parts) - 1.0) > 1e-6:
        raise DataError(f"--split {_short(text)}: the fractions sum to {sum(parts):g}, not 1; e.g. --split 0.8,0.1,0.1")
    return parts  # type: ignore[return-value]


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


def _split_indices(ds: Dataset, ratios, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    from sklearn.model_selection import train_test_split

    check_split_seed(seed)
    n = len(ds.y)
    n_train, n_dev, n_test = split_sizes(n, ratios)
    if min(n_train, n_dev, n_test) < 1:
        raise DataError(f"{ds.name}: {n} examples are too few to split into train/dev/test; add data")
    idx = np.arange(n)
    labels = ds.y.numpy() if ds.task != "regression" else None
    for stratify in ([labels, None] if labels is not None else [None]):
        try:
            rest, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=stratify)
            strat_rest = stratify[rest] if stratify is not None else None
            train, dev = train_test_split(rest, test_size=n_dev, random_state=(seed + 1) % (MAX_SEED + 1), stratify=strat_rest)
            return np.sort(train), np.sort(dev), np.sort(test), stratify is not None
        except ValueError:  # a class too rare to stratify on: fall back to a plain shuffle split
            continue
    raise DataError(f"{ds.name}: cannot split {n} examples as asked")


def make_splits(
    ds: Dataset,
    ratios: tuple[float, float, float] | None = None,
    seed: int = 0,
    train_fraction: float = 1.0,
    include_test: bool = False,
    spec: DataSpec | None = None,
) -> Splits:
    """Split once, seeded and stratified; scale with training statistics only.

    The test split is left out unless `include_test` (only `tunectl evaluate` asks).
    """
    check_split_seed(seed)
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) \
            or not 0.0 < train_fraction <= 1.0:
        raise DataError(f"--train-fraction {_short(train_fraction)}: must be in (0, 1], e.g. 0.25")
    train, dev, test, stratified = _split_indices(ds, ratios, seed)
    manifest = {
        "dataset": ds.name,
        "spec": spec.to_dict() if spec else {"name": ds.name},
        "seed": seed,
        "ratios": list(ratios) if ratios else None,
        "stratified": stratified,
        "n_examples": len(ds.y),
        "sizes": {"train": len(train), "dev": len(dev), "test": len(test)},
        "hashes": {k: _digest(torch.from_numpy(v)) for k, v in (("train", train), ("dev", dev), ("test", test))},
        "data_hash": _digest(ds.x) + _digest(ds.y),
        "task": ds.task,
    }
    if train_fraction < 1.0:
        rng = np.random.default_rng(seed)
        keep = max(1, round(train_fraction * len(train)))
        train = np.sort(rng.choice(train, size=keep, replace=False))
        manifest["train_fraction"] = train_fraction
        manifest["train_used"] = len(train)
    x_tr, y_tr = ds.x[train], ds.y[train]
    if ds.is_image:  # one mean/std per channel
        dims = [0, *range(2, ds.x.ndim)]
        mean, std = x_tr.mean(dim=dims, keepdim=True)[:1], x_tr.std(dim=dims, keepdim=True)[:1]
    else:  # one mean/std per feature
        mean, std = x_tr.mean(dim=0, keepdim=True), x_tr.std(dim=0, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # NaN (one example) fails '>' too  # constant features stay as they are
    scale = lambda x: (x - mean) / std  # noqa: E731
    y_scale, y_mean = 1.0, 0.0
    if ds.task == "regression":
        y_mean, y_scale = float(y_tr.mean()), float(y_tr.std()) if len(y_tr) > 1 else 1.0
        y_scale = y_scale if y_scale > 1e-12 else 1.0
    ty = (lambda y: (y - y_mean) / y_scale) if ds.task == "regression" else (lambda y: y)
    manifest["scaling"] = {"from": "train", "y_mean": y_mean, "y_scale": y_scale}
    out_dim = ds.n_classes if ds.task == "multiclass" else 1
    return Splits(
        scale(x_tr), ty(y_tr), scale(ds.x[dev]), ty(ds.y[dev]), ds.task, tuple(ds.x.shape[1:]), out_dim,
        manifest, ds.is_image, ds.flips_ok, y_scale, ds.classes,
        (scale(ds.x[test]), ty(ds.y[test])) if include_test else None,
    )


def load_splits(spec: DataSpec, ratios=None, seed: int = 0, train_fraction: float = 1.0, include_test=False) -> Splits:
    return make_splits(load_dataset(spec), ratios, seed, train_fraction, include_test, spec)


def same_split(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Do two manifests describe the same data and the same split?"""
    keys = ("data_hash", "hashes", "sizes", "seed")
    return all(a.get(k) == b.get(k) for k in keys)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def describe() -> list[tuple[str, str]]:
    return [*EMBEDDED.items(), *TORCHVISION.items(), *PREFIXED.items()]


def augmenter(level: str, input_shape: tuple[int, ...], flips_ok: bool):
    """Training-batch augmentation: a random shift, rotation (and scale) drawn per image.

    light: shifts up to 1/8 of the side and rotations up to 10 degrees; strong: rotations
    up to 15 degrees and scaling by 0.9-1.1 as well. Horizontal flips only where the data
    allow them (not digits). Why not torchvision's v2.RandomAffine: it draws one set of
    parameters per call, so a batch would get one shift for all images, and calling it per
    image costs ~2.6 ms an image. The same affine warp, drawn per image, is one
    `affine_grid` + `grid_sample` over the whole batch on the device.
    """
    from torch.nn import functional as F

    degrees, scale = (10.0, 0.0) if level == "light" else (15.0, 0.1)
    shift = 2 * (max(1, input_shape[-1] // 8) / input_shape[-1])  # in grid units: the side spans 2

    def apply(xb: torch.Tensor) -> torch.Tensor:
        n, dev = len(xb), xb.device
        u = lambda: torch.rand(n, device=dev) * 2 - 1  # noqa: E731  uniform in [-1, 1]
        angle = u() * math.radians(degrees)
        s = 1 + u() * scale
        flip = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0) if flips_ok else torch.ones(n, device=dev)
        cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
        theta = torch.stack([torch.stack([cos * flip, -sin, u() * shift], 1),
                             torch.stack([sin * flip, cos, u() * shift], 1)], 1)
        grid = F.affine_grid(theta, list(xb.shape), align_corners=False)
        return F.grid_sample(xb, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return apply
