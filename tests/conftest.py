"""Shared helpers and fixtures: the CLI in process, small real data sets, one tiny real study,
and writers for the on-disk formats the loaders read.

`invoke` and `ok_json` are plain functions (`from conftest import invoke, ok_json`): they are
called inside fixtures of any scope and in helpers, where a fixture could not be asked for.

The writers produce the *real* formats (MNIST idx, CIFAR-10 pickle batches, ImageFolder
PNGs, CSV, npz) in `tmp_path`, tiny, so the loaders are tested against what a download
or a user's folder would really hold.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tunectl.sources import DataSpec, load_dataset
from tunectl.data import make_splits

# The models here are tiny: one thread is as fast, and it keeps the suite's time steady when
# another process shares the CPU cores (intra-op threads waiting on a busy core are slow).
torch.set_num_threads(1)

MNIST_FILES = {
    # torchvision's file names after download and extraction (MNIST.resources minus .gz)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="session", autouse=True)
def _decode_cache(tmp_path_factory):
    """The folder decode cache of the whole test run lives in a temporary folder, never in ~/.cache
    (subprocesses inherit it). Tests of the cache itself point TUNECTL_CACHE elsewhere."""
    old = os.environ.get("TUNECTL_CACHE")
    os.environ["TUNECTL_CACHE"] = str(tmp_path_factory.mktemp("decode-cache"))
    yield
    if old is None:
        os.environ.pop("TUNECTL_CACHE", None)
    else:
        os.environ["TUNECTL_CACHE"] = old


# ----------------------------------------------------------------------------- the CLI, in process


def invoke(*args: Any, env: dict[str, str] | None = None, cwd: str | Path | None = None):
    """Run `tunectl ARGS...` in this process with Typer's CliRunner (each argument str()-ed).

    env: variables set for the command only, e.g. {"COLUMNS": "200"} so rich tables print
    names whole (CliRunner's output is no terminal: rich draws 80 columns otherwise);
    cwd: the working folder for the command, the old one restored after.
    """
    from tunectl.cli import app  # here, not at the top: conftest is imported before any test runs

    if cwd is None:
        return CliRunner().invoke(app, [str(a) for a in args], env=env)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [str(a) for a in args], env=env)
    finally:
        os.chdir(old)


def ok_json(result) -> Any:
    """The JSON a `--json` command printed, once it exited 0 (stdout holds the JSON and nothing else)."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def mapped(name: str = "images.npy") -> int:
    """Resident bytes of this process's mappings of files called `name`."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                inside = line.rstrip().endswith(name)
            elif inside and head[0] == "Rss:":
                total += int(head[1]) * 1024
    return total


# ----------------------------------------------------------------------------- real, small data sets


@pytest.fixture(scope="session")
def digits_ds():
    return load_dataset(DataSpec("digits"))


@pytest.fixture(scope="session")
def digits(digits_ds):
    """scikit-learn's digits (1x8x8 images, 10 classes), default 60/20/20 split."""
    return make_splits(digits_ds, spec=DataSpec("digits"))


@pytest.fixture(scope="session")
def iris():
    return make_splits(load_dataset(DataSpec("iris")))


@pytest.fixture(scope="session")
def breast_cancer():
    return make_splits(load_dataset(DataSpec("breast_cancer")))


@pytest.fixture(scope="session")
def wine():
    return make_splits(load_dataset(DataSpec("wine")))


@pytest.fixture(scope="session")
def diabetes():
    return make_splits(load_dataset(DataSpec("diabetes")))


# ----------------------------------------------------------------------------- one tiny real study

# trials of a few seconds (10 epochs at batch 8), long enough to be caught RUNNING by a poll every 0.1 s
# (test_tune.py, test_workers_share.py)
SLOW_SPACE = """\
dataset: digits
epochs: 10
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
fixed:
  width: 32
  depth: 1
  batch_size: 8
"""
TINY_SPACE = """\
model: mlp
dataset: digits
epochs: 2
params:
  lr:    {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  width: {type: int, low: 2, high: 4}
fixed:
  depth: 1
"""
TINY_TRIALS = 3


class TinyStudy:
    """A finished study: `root` holds it (as --root), `name` names it, `space` is the space file
    it was tuned from, `tuned` what `tune --json` printed."""

    def __init__(self, root: Path, name: str, space: Path, tuned: dict[str, Any]):
        self.root, self.name, self.space, self.tuned = root, name, space, tuned

    @property
    def folder(self) -> Path:
        return self.root / self.name


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> TinyStudy:
    """`tunectl tune` of 3 trials of 2 epochs on digits (mlp, one hidden layer of 2-4 units: every
    trial has high bias), no pruning, once for the whole test run. The study is named from the
    data set and the space file, digits-tiny; all three trials keep their weights.

    Shared by every test that asks for it: READ it only. A test that changes a study (tunes more,
    evaluates, edits a file) copies it first: shutil.copytree(tiny_study.root, tmp_path / "studies").
    """
    tmp = tmp_path_factory.mktemp("tiny-study")
    space = tmp / "tiny.yaml"
    space.write_text(TINY_SPACE)
    root = tmp / "studies"
    tuned = ok_json(invoke("tune", "--space", space, "--root", root, "--trials", TINY_TRIALS, "--pruner", "none",
                           "--device", "cpu", "--json", cwd=tmp))  # anything relative stays in tmp
    assert tuned["states"]["COMPLETE"] == TINY_TRIALS, tuned["states"]
    return TinyStudy(root, tuned["study"], space, tuned)


# ----------------------------------------------------------------------------- on-disk formats


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An idx file as on yann.lecun.com: magic 0x0000 08 NDIM (uint8), big-endian dims, data.

    A name ending in .gz is gzipped, as the MNIST site ships them.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    return images, labels


@pytest.fixture
def write_mnist():
    """write_mnist(folder, n_train, n_test, layout, gz) -> {'train': (x, y), 'test': (x, y)}.

    layout='torchvision': FOLDER/raw/<name> uncompressed, as torchvision leaves them after
    download (FOLDER is ROOT/MNIST or ROOT/FashionMNIST); layout='flat': the files side by
    side in FOLDER, gzipped if gz.
    """

    def write(folder: Path, n_train: int = 30, n_test: int = 10, layout: str = "torchvision", gz: bool = False):
        arrays = {"train": mnist_arrays(n_train, 1), "test": mnist_arrays(n_test, 2)}
        where = Path(folder) / "raw" if layout == "torchvision" else Path(folder)
        suffix = ".gz" if gz else ""
        for part, (img_name, lab_name) in MNIST_FILES.items():
            x, y = arrays[part]
            if len(x):
                write_idx(where / f"{img_name}{suffix}", x)
                write_idx(where / f"{lab_name}{suffix}", y)
        return arrays

    return write


@pytest.fixture
def write_cifar():
    """write_cifar(root, per_batch) -> (train_x, train_y, test_x, test_y), in the real
    cifar-10-batches-py layout: data_batch_1..5 and test_batch (dicts with 'data' as
    N x 3072 uint8 rows, channel-major, and 'labels'), and batches.meta."""

    def write(root: Path, per_batch: int = 4):
        base = Path(root) / "cifar-10-batches-py"
        base.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        xs, ys = {}, {}
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, per_batch)]
            entry = {"batch_label": name, "labels": labels, "data": data,
                     "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
            with open(base / name, "wb") as f:
                pickle.dump(entry, f)
            xs[name], ys[name] = data, labels
        with open(base / "batches.meta", "wb") as f:
            pickle.dump({"num_cases_per_batch": per_batch, "label_names": CIFAR_CLASSES, "num_vis": 3072}, f)
        train = [f"data_batch_{i}" for i in range(1, 6)]
        return (np.concatenate([xs[b] for b in train]), sum((ys[b] for b in train), []),
                xs["test_batch"], ys["test_batch"])

    return write


@pytest.fixture
def write_image_folder():
    """write_image_folder(root, {class: n}, size=(h, w) or sizes=[...]) -> {path: HxWx3 array}.

    An ImageFolder: one sub-folder per class holding RGB PNGs.
    """
    from PIL import Image

    def write(root: Path, counts: dict[str, int], size=(8, 8), sizes=None):
        rng = np.random.default_rng(0)
        pixels = {}
        k = 0
        for cls, n in counts.items():
            (Path(root) / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = sizes[k % len(sizes)] if sizes else size
                arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                path = Path(root) / cls / f"img{i:02d}.png"
                Image.fromarray(arr).save(path)
                pixels[path] = arr
                k += 1
        return pixels

    return write


def curve_without_time(curve: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in curve]


@pytest.fixture
def strip_seconds():
    return curve_without_time


class Planted:
    """Unpickling this object opens (creates) a file: the stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))
