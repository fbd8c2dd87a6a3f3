"""Data settings and the train/dev/test split: seeded, stratified, recorded, scaled from train only.

`DataSettings` is what a study or run trains on (the data set, how to read it, how to split it),
stored in studies, run folders and params files. `load_splits(settings)` reads the data set
(`sources.py`) and cuts it into train/dev/test with a seeded, stratified split; the `Splits`
carry a manifest (seed, sizes, hash of each split's indices, hash of the data) so a later run
can prove it used the same split. Scaling statistics come from the training examples only, so
nothing about dev or test leaks into training. A table's preprocessing record (`tables.py`: types,
categories, medians) is fitted on the training rows here too, and kept in the manifest with the
scaling; given a stored manifest (`stored=`), both are applied as stored, never recomputed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunectl import sequences
from tunectl.errors import DataError
from tunectl.sources import MAX_IMAGE_SIZE, TASKS, Dataset, DataSpec, _short, _to_float32, check_image_size, load_dataset

DEV_TEST_FRACTION = 0.2  # dev and test each get 20% of the examples ...

DEV_TEST_CAP = 10_000  # ... but no more than 10,000 each, so a million examples split ~98/1/1

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
    vocab: int = 0  # token sequences: the number of token ids (0: the inputs are numbers)
    x_scale: torch.Tensor | None = None  # the training split's std that standardized x: eps in the input's units

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

MAX_SEED = 2**32 - 1  # NumPy and scikit-learn take 32-bit seeds

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
        if key in ("dataset", "data_dir", "target", "task", "sequence", "drop", "categorical", "numeric"):
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}: expected a name, got {_short(value)}"
                                + (", e.g. dataset: digits" if key == "dataset" else ""))
            if key == "task" and value not in TASKS:
                raise DataError(f"{where}: {_short(value)} is not one of {', '.join(TASKS)}")
            if key in ("drop", "categorical", "numeric"):
                from tunectl.tables import parse_columns

                try:
                    parse_columns(value, "--" + key)
                except DataError as e:
                    raise DataError(f"{where}: {str(e).split(': ', 1)[1]}") from None
        elif key in ("dropna", "as_sequence"):
            if not isinstance(value, bool):
                raise DataError(f"{where}: expected true or false, got {_short(value)}")
        elif key == "image_size":
            try:
                check_image_size(value)
            except DataError:
                raise DataError(f"{where}: expected a whole number of pixels between 1 and {MAX_IMAGE_SIZE}, "
                                f"got {_short(value)}") from None
        elif key == "classes":
            try:
                parse_classes(value)
            except DataError as e:
                raise DataError(f"{where}: {str(e).split(': ', 1)[1]}") from None
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

def _check_flag(key: str, value: Any) -> Any:
    """A data option given on the command line, refused in the flag's own name (--split, --split-seed, ...)."""
    if key not in DataSettings.KEYS:
        raise DataError(f"unknown data setting {_short(key, 60)}; allowed: {', '.join(DataSettings.KEYS)}")
    if key == "image_size":
        check_image_size(value)
    elif key == "split_seed":
        check_split_seed(value)
    elif key == "split":
        parse_split(value)
    elif key == "classes":
        parse_classes(value)
    elif key == "sequence" and (not isinstance(value, str) or not value.strip()):
        raise DataError(f"--sequence {_short(value)}: give the CSV column that holds the text, e.g. --sequence text")
    elif key in ("drop", "categorical", "numeric"):
        from tunectl.tables import parse_columns

        parse_columns(value, "--" + key)
    elif key == "train_fraction" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0.0 < value <= 1.0):
        raise DataError(f"--train-fraction {_short(value)}: must be in (0, 1], e.g. 0.25")
    return value


@dataclass(frozen=True)
class DataSettings:
    """What a study or run trains on: the data set, how to read it, and how to split it.

    Stored as `to_dict()` in a study (its record's `data`), a run folder and a params file's
    `data:` section; read back with `from_dict`, which checks every key and type.
    """

    dataset: str = "digits"
    data_dir: str = "data"  # where torchvision data sets live
    target: str | None = None  # csv: the column to predict
    task: str | None = None  # force binary | multiclass | regression
    image_size: int | None = None  # folder: resize every image to N x N
    split: str | None = None  # train,dev,test fractions, e.g. "0.8,0.1,0.1" (None: 60/20/20, capped)
    split_seed: int = 0
    train_fraction: float = 1.0  # train on this seeded share of the training split
    classes: str | None = None  # keep these classes only, relabelled 0..k-1: "0-4", "5,6,7", "cat,dog"
    sequence: str | None = None  # csv: the text column, read as characters (sequences.py)
    as_sequence: bool = False  # read as sequences: an image as H steps of W features, npz integers as tokens
    drop: str | None = None  # tables: columns left out ("id,name")
    categorical: str | None = None  # tables: columns one-hot encoded, overriding the inferred type
    numeric: str | None = None  # tables: columns read as numbers, overriding the inferred type
    dropna: bool = False  # tables: drop incomplete rows instead of filling them (the count is in the manifest)
    download: bool = False  # fetch a torchvision data set if absent (never stored)
    stream: bool = False  # read image batches from the memory-mapped bytes (never stored: same results)

    KEYS = ("dataset", "data_dir", "target", "task", "image_size", "split", "split_seed", "train_fraction", "classes",
            "sequence", "as_sequence", "drop", "categorical", "numeric", "dropna")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, **changes: Any) -> "DataSettings":
        """Stored settings (unknown keys refused), with `changes` (e.g. command-line flags, None: unset) over them."""
        data = dict(data or {})
        unknown = sorted(str(k) for k in set(data) - set(cls.KEYS))
        if unknown:
            raise DataError(f"data: unknown key {_short(unknown[0], 60)}; allowed: {', '.join(cls.KEYS)}")
        checked = check_data_settings(data)
        for key, value in changes.items():
            if value is not None and value is not False and key not in ("download", "stream"):
                checked[key] = _check_flag(key, value)
        if isinstance(checked.get("split"), list):
            checked["split"] = ",".join(str(v) for v in checked["split"])
        return cls(**checked, download=bool(changes.get("download")), stream=bool(changes.get("stream")))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": self.dataset, "data_dir": self.data_dir, "split_seed": self.split_seed}
        for key in ("target", "task", "image_size", "split", "classes", "sequence", "drop", "categorical", "numeric"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("as_sequence", "dropna"):
            if getattr(self, key):
                out[key] = True
        if self.train_fraction != 1.0:
            out["train_fraction"] = self.train_fraction
        return out

    def with_(self, **changes: Any) -> "DataSettings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.dataset, self.data_dir, self.download, self.target, self.task, self.image_size,
                        sequence=self.sequence, as_sequence=self.as_sequence, drop=self.drop,
                        categorical=self.categorical, numeric=self.numeric, dropna=self.dropna)

    @property
    def ratios(self) -> tuple[float, float, float] | None:
        return parse_split(self.split) if self.split else None


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

CLASSES_EXAMPLE = "e.g. --classes 0-4, --classes 5,6,7 or --classes cat,dog"

def parse_classes(text: Any) -> list[str]:
    """--classes: the items between commas (a class name, an index, or a range of indices such as 0-4).

    Only the form is checked here; which classes exist is known once the data set is read."""
    if not isinstance(text, str):
        raise DataError(f"--classes {_short(text)}: give class indices or names, {CLASSES_EXAMPLE}")
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise DataError(f"--classes {_short(text)}: an empty selection; give class indices or names, {CLASSES_EXAMPLE}")
    if not all(items):
        raise DataError(f"--classes {_short(text)}: an empty item between commas; {CLASSES_EXAMPLE}")
    return items

def _class_indices(text: str, ds: Dataset) -> list[int]:
    """The original indices --classes names, sorted and without repeats (a name before an index: 'T-shirt/top')."""
    names, found = ds.classes, set()
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    for item in parse_classes(text):
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", item)
        if item in names:
            found.add(names.index(item))
            continue
        if item.isdigit():
            lo = hi = int(item)
        elif m:
            lo, hi = int(m[1]), int(m[2])
            if lo > hi:
                raise DataError(f"--classes {_short(text)}: the range {item} runs backwards; write {hi}-{lo}")
        else:
            raise DataError(f"--classes {_short(text)}: {ds.name} has no class {_short(item, 40)}; "
                            f"its classes are {shown} (or their indices 0-{len(names) - 1})")
        if hi >= len(names):
            raise DataError(f"--classes {_short(text)}: {ds.name} has no class {hi}; "
                            f"its {len(names)} classes are indices 0-{len(names) - 1} ({shown})")
        found.update(range(lo, hi + 1))
    return sorted(found)

def select_classes(ds: Dataset, text: str, task: str | None = None) -> tuple[Dataset, dict[str, Any]]:
    """Keep the examples of the classes `text` selects (--classes), relabelled 0..k-1 in their original order.

    `task` is a forced --task (binary: the selection must be two classes). Returns the data set and
    the record the split manifest keeps (the selection as given, the names and original indices)."""
    if ds.task == "regression" or task == "regression":
        raise DataError(f"--classes {_short(text)}: {ds.name} is a regression data set (its targets are numbers, "
                        f"not classes); drop --classes")
    keep = _class_indices(text, ds)
    if len(keep) < 2:
        raise DataError(f"--classes {_short(text)}: selects {len(keep)} class ({ds.classes[keep[0]]}); "
                        f"a classifier needs at least two, {CLASSES_EXAMPLE}")
    if task == "binary" and len(keep) != 2:
        raise DataError(f"--classes {_short(text)}: selects {len(keep)} classes but --task binary needs 2")
    counts = torch.bincount(ds.y, minlength=len(ds.classes))
    empty = [ds.classes[i] for i in keep if counts[i] == 0]
    if empty:
        raise DataError(f"--classes {_short(text)}: {ds.name} has no examples of class {_short(empty[0], 40)}")
    relabel = torch.full((len(ds.classes),), -1, dtype=torch.int64)
    relabel[keep] = torch.arange(len(keep))
    rows = relabel[ds.y] >= 0
    names = [ds.classes[i] for i in keep]
    new_task = task or ("binary" if len(keep) == 2 else "multiclass")
    out = replace(ds, x=ds.x[rows], y=relabel[ds.y[rows]], task=new_task, classes=names, x_digest=None, pages=None,
                  table=ds.table.take(rows.numpy()) if ds.table is not None else None)
    return out, {"selection": text, "names": names, "indices": keep}

def read_dataset(settings: "DataSettings", raw: bool = False) -> tuple[Dataset, dict[str, Any] | None]:
    """The data set `settings` name, its --classes selected (with the selection's manifest record, or None),
    read as sequences with --as-sequence. raw: images read as bytes stay bytes (see `make_splits`);
    --as-sequence reads them as floats (their rows are a sequence's features)."""
    ds, classes = _read_selected(settings, raw and not settings.as_sequence)
    if settings.as_sequence:  # floats by now: their rows are steps, scaled as features (not as pixels)
        return sequences.as_sequence(replace(ds, pixels=None, x_digest=None, pages=None)), classes
    return ds, classes

def _load(spec: DataSpec, raw: bool = False) -> Dataset:
    if spec.sequence is None:
        return load_dataset(spec, raw)
    if not spec.name.startswith("csv:"):
        raise DataError(f"--sequence {_short(spec.sequence)}: names a CSV's text column, but the data set is "
                        f"{_short(spec.name)}; use it with csv:PATH (for images and arrays: --as-sequence)")
    return sequences.load_text_csv(Path(spec.name.removeprefix("csv:")), spec.target, spec.sequence, spec.task)

def _read_selected(settings: "DataSettings", raw: bool = False) -> tuple[Dataset, dict[str, Any] | None]:
    if settings.classes is None:
        return _load(settings.spec, raw), None
    spec = settings.spec
    if spec.task == "regression":
        raise DataError(f"--classes {_short(settings.classes)}: --task regression has no classes; drop --classes")
    # a forced binary task applies to the selection (binary on ten digits would be refused before it)
    ds = _load(replace(spec, task=None) if spec.task == "binary" else spec, raw)
    return select_classes(ds, settings.classes, spec.task)

def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]

def _data_digest(ds: Dataset) -> str:
    """The hash of the examples as float32, whether they are held as floats or as bytes."""
    if ds.x.dtype != torch.uint8 or not ds.pixels:
        return _digest(ds.x)
    from tunectl.pixels import float_digest

    return ds.x_digest or float_digest(ds.x, ds.pixels, ds.pages)

def split_indices(ds: Dataset, ratios, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
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
    classes: dict[str, Any] | None = None,
    stream: bool = False,
    stored: dict[str, Any] | None = None,
) -> Splits:
    """Split once, seeded and stratified; scale with training statistics only.

    The test split is left out unless `include_test` (only `tunectl evaluate` asks). `classes`:
    the --classes record from `read_dataset`, kept in the manifest. Images read as bytes (a uint8
    `ds.x`, `ds.pixels` set) stay bytes: the splits are `pixels.Rows`, scaled per mini-batch, with
    the same statistics, hash and values as the float32 path; `stream` (or a data set larger than
    a share of memory) reads each batch from the mapped bytes rather than the device.
    `stored`: the manifest of the
    study (or run) these data were split for: its preprocessing record and scaling are applied
    as they are (the data hash then proves the data unchanged).
    """
    check_split_seed(seed)
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) \
            or not 0.0 < train_fraction <= 1.0:
        raise DataError(f"--train-fraction {_short(train_fraction)}: must be in (0, 1], e.g. 0.25")
    train, dev, test, stratified = split_indices(ds, ratios, seed)
    stored = stored if isinstance(stored, dict) else {}
    record = None
    if ds.table is not None:  # a table: its encoding is learned from the training rows only
        from tunectl.tables import check_record, encode, fit

        record = check_record(stored["preprocessing"]) if stored.get("preprocessing") else fit(ds.table, train)
        ds = replace(ds, x=_to_float32(encode(record, ds.table.frame), ds.name))
    manifest = {
        "dataset": ds.name,
        "spec": spec.to_dict() if spec else {"name": ds.name},
        "seed": seed,
        "ratios": list(ratios) if ratios else None,
        "stratified": stratified,
        "n_examples": len(ds.y),
        "sizes": {"train": len(train), "dev": len(dev), "test": len(test)},
        "hashes": {k: _digest(torch.from_numpy(v)) for k, v in (("train", train), ("dev", dev), ("test", test))},
        "data_hash": _data_digest(ds) + _digest(ds.y),
        "task": ds.task,
    }
    if classes is not None:
        manifest["classes"] = classes
    if ds.classes:
        manifest["labels"] = list(ds.classes)  # what each output means (predict names its columns so)
    if record is not None:
        manifest["preprocessing"] = record
        manifest["dropped_rows"] = {"missing_target": record["rows"]["missing_target"],
                                    "incomplete": record["rows"]["incomplete"]}
    if train_fraction < 1.0:
        rng = np.random.default_rng(seed)
        keep = max(1, round(train_fraction * len(train)))
        train = np.sort(rng.choice(train, size=keep, replace=False))
        manifest["train_fraction"] = train_fraction
        manifest["train_used"] = len(train)
    if stream and not ds.pixels:
        raise DataError(f"--stream: {ds.name} is not held as image bytes (only folder:, mnist, fashion_mnist, "
                        f"cifar10 and npz/py: data with uint8 images stream); drop --stream")
    vocabulary = None
    if ds.sequence == "chars":  # the vocabulary is the training split's characters: dev and test may hold others
        x, vocabulary = sequences.encode_chars(ds.x, train)
        ds = replace(ds, x=x, vocab=len(vocabulary) + 2)
    if ds.sequence:
        manifest["sequence"] = sequences.record(ds, ds.vocab, vocabulary)
    y_tr = ds.y[train]
    held: dict[int, torch.Tensor] = {}  # images held as bytes in memory: each split's rows, gathered once
    if ds.x.dtype == torch.uint8 and ds.pixels:
        from tunectl.pixels import gather, should_stream

        stream = stream or should_stream(ds.x.numel())
        if not stream:  # a copy of the rows each split needs, no mapping of the whole file (see pixels.gather)
            held = {id(rows): gather(ds.x, rows, ds.pages) for rows in (train, dev, *([test] if include_test else []))}
    if sequences.is_tokens(ds):  # token ids are names, not numbers: never scaled
        mean, std = torch.zeros(()), torch.ones(())
    elif ds.pixels:  # images read as bytes, or their float32 conversion: the same statistics either way
        from tunectl.pixels import channel_stats

        # the same rows in the same order, so the same chunks and sums, from the gathered copy if there is one
        mean, std = (channel_stats(held[id(train)], None, ds.pixels) if held
                     else channel_stats(ds.x, train, ds.pixels, ds.pages))
    elif ds.is_image:  # one mean/std per channel
        x_tr = ds.x[train]
        dims = [0, *range(2, ds.x.ndim)]
        mean, std = x_tr.mean(dim=dims, keepdim=True)[:1], x_tr.std(dim=dims, keepdim=True)[:1]
    else:  # one mean/std per feature
        x_tr = ds.x[train]
        mean, std = x_tr.mean(dim=0, keepdim=True), x_tr.std(dim=0, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # NaN (one example) fails '>' too  # constant features stay as they are
    old = stored.get("scaling") if isinstance(stored.get("scaling"), dict) else {}
    if "x_mean" in old and stored.get("train_fraction", 1.0) == train_fraction:  # as stored, not recomputed
        m, s = torch.tensor(old["x_mean"], dtype=torch.float32), torch.tensor(old["x_std"], dtype=torch.float32)
        if m.shape == mean.shape == s.shape:  # else the data changed: the data hash below says so
            mean, std = m, s
    if sequences.is_tokens(ds):
        part = lambda rows: ds.x[rows]  # noqa: E731
    elif held:  # bytes in memory: each split's own copy, scaled per mini-batch
        from tunectl.pixels import Rows

        part = lambda rows: Rows(held[id(rows)], torch.arange(len(rows)), ds.pixels, mean, std)  # noqa: E731
    elif ds.x.dtype == torch.uint8 and ds.pixels:  # streamed: the whole mapped array and the split's rows
        from tunectl.pixels import Rows

        part = lambda rows: Rows(ds.x, torch.from_numpy(rows), ds.pixels, mean, std, True, pages=ds.pages)  # noqa: E731
    else:
        part = lambda rows: (ds.x[rows] - mean) / std  # noqa: E731
    y_scale, y_mean = 1.0, 0.0
    if ds.task == "regression":
        y_mean, y_scale = float(y_tr.mean()), float(y_tr.std()) if len(y_tr) > 1 else 1.0
        y_scale = y_scale if y_scale > 1e-12 else 1.0
    ty = (lambda y: (y - y_mean) / y_scale) if ds.task == "regression" else (lambda y: y)
    manifest["scaling"] = {"from": "train", "y_mean": y_mean, "y_scale": y_scale,
                           "x_mean": mean.tolist(), "x_std": std.tolist()}  # per feature, or per channel
    out_dim = ds.n_classes if ds.task == "multiclass" else 1
    return Splits(
        part(train), ty(y_tr), part(dev), ty(ds.y[dev]), ds.task, tuple(ds.x.shape[1:]), out_dim,
        manifest, ds.is_image, ds.flips_ok, y_scale, ds.classes,
        (part(test), ty(ds.y[test])) if include_test else None,
        ds.vocab, None if sequences.is_tokens(ds) else std,
    )

def load_splits(settings: DataSettings, include_test: bool = False, raw: bool = False,
                stored: dict[str, Any] | None = None) -> Splits:
    """Read the data set and split it as `settings` say (include_test: only `evaluate` does).

    raw: image data read as bytes stay bytes (`pixels.Rows`, scaled per mini-batch; `train.fit`
    takes them); otherwise every split is a float32 tensor. The numbers are the same either way.
    `stored`: the study's manifest, whose preprocessing and scaling are applied as stored."""
    ds, classes = read_dataset(settings, raw)
    return make_splits(ds, settings.ratios, settings.split_seed, settings.train_fraction, include_test,
                       settings.spec, classes, settings.stream, stored)


def same_split(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Do two manifests describe the same data and the same split?"""
    keys = ("data_hash", "hashes", "sizes", "seed")
    return all(a.get(k) == b.get(k) for k in keys)

def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_text(json.dumps(manifest, indent=2) + "\n")

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


def inspect(settings: DataSettings) -> dict[str, Any]:
    """What tunectl makes of a data set (`tunectl datasets --dataset`): the task, the classes, the
    split's sizes and, for a table, the preprocessing record fitted on the training split."""
    splits = load_splits(settings)
    m = splits.manifest
    out = {"dataset": settings.dataset, "task": splits.task, "labels": list(splits.classes),
           "input_shape": list(splits.input_shape), "sizes": m["sizes"], "split_seed": m["seed"]}
    if m.get("preprocessing"):
        from tunectl.tables import describe

        out.update(dropped_rows=m["dropped_rows"], preprocessing=m["preprocessing"], lines=describe(m["preprocessing"]))
    return out
