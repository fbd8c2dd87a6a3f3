"""What a process holds of images kept as bytes (issue 18): its splits' rows and no more.

Checked structurally, never by wall time: the pages of the cache file a process has mapped
(/proc/self/smaps, Linux), how many images are held as floats at once (each converted batch
tracked until it is freed), and the rows each split's own copy holds. The numbers trained on stay
the float32 path's to the bit (tests/test_decode_cache.py trains both).
"""

from __future__ import annotations

import gc
import pickle
import sys
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import mapped
from tunectl import attacks, pixels, train
from tunectl.config import TrainConfig
from tunectl.data import DataSettings, load_splits
from tunectl.pixels import Rows, channel_stats, gather, to_float
from tunectl.train import fit

linux = pytest.mark.skipif(sys.platform != "linux", reason="reads the process's mappings in /proc/self/smaps (Linux)")

SIDE = 64  # 64 x 64 x 3 = 12 KiB an image: three pages, so a row's pages are its own


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    where = tmp_path / "cache"
    monkeypatch.setenv("TUNECTL_CACHE", str(where))
    return where


def folder(root: Path, per_class: int = 60, size: int = SIDE) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i:04d}.png")
    return root


class LiveFloats:
    """The most images ever held as floats at once by Rows' indexing (each batch counted until it is freed),
    and the largest batch converted."""

    def __init__(self, monkeypatch):
        self.live = self.most = self.batch = 0
        original = Rows.__getitem__

        def getitem(rows, key):
            out = original(rows, key)
            n = len(out) if out.ndim == rows.ndim else 1
            self.live += n
            self.most, self.batch = max(self.most, self.live), max(self.batch, n)
            weakref.finalize(out, self._freed, n)
            return out

        monkeypatch.setattr(Rows, "__getitem__", getitem)

    def _freed(self, n: int) -> None:
        self.live -= n


@linux
def test_in_memory_a_process_holds_its_splits_rows_not_the_file(tmp_path, cache_dir):
    root = folder(tmp_path / "imgs")
    settings = DataSettings(dataset=f"folder:{root}")
    load_splits(settings, raw=True)  # builds the cache; its mapping goes with it
    gc.collect()
    splits = load_splits(settings, raw=True)
    file_bytes = (next(cache_dir.glob("folders/*/images.npy"))).stat().st_size
    sizes = splits.manifest["sizes"]
    # each split's own copy, of its rows only: the test split's rows are nowhere
    assert [len(splits.x_train.base), len(splits.x_dev.base)] == [sizes["train"], sizes["dev"]]
    assert splits.x_train.base.dtype == torch.uint8 and not splits.x_train.stream
    # the cache file's pages were given back as they were copied (and statistics come from the copy):
    # the old code kept the whole file mapped (every page holds a training row)
    assert mapped() < file_bytes // 4, (mapped(), file_bytes)
    floats = load_splits(settings)
    assert torch.equal(splits.x_train[:], floats.x_train) and torch.equal(splits.x_dev[:], floats.x_dev)
    assert splits.manifest == floats.manifest


@linux
def test_streaming_gives_back_the_pages_it_has_read(tmp_path, cache_dir, monkeypatch):
    root = folder(tmp_path / "imgs", per_class=70)
    settings = DataSettings(dataset=f"folder:{root}", stream=True)
    load_splits(settings, raw=True)
    gc.collect()
    monkeypatch.setattr(pixels, "STREAM_HOLD", 32 << 10)
    splits = load_splits(settings, raw=True)
    file_bytes = (next(cache_dir.glob("folders/*/images.npy"))).stat().st_size
    assert splits.x_train.stream and splits.x_train.pages is not None
    assert mapped() < file_bytes // 4  # the statistics' chunks were given back too
    cfg = TrainConfig(model="mlp", depth=1, width=8, epochs=1, batch_size=16, seed=0)
    hist = fit(cfg, splits, device="cpu")
    # every training and evaluation batch read the mapping; a few batches' pages at most stay mapped
    assert mapped() < file_bytes // 4, (mapped(), file_bytes)
    mem = fit(cfg, load_splits(replace(settings, stream=False), raw=True), device="cpu")
    assert hist.dev_error == mem.dev_error and hist.train_error == mem.train_error


@linux
def test_released_pages_read_back_the_same_bytes(tmp_path, cache_dir):
    root = folder(tmp_path / "imgs", per_class=20)
    splits = load_splits(DataSettings(dataset=f"folder:{root}", stream=True), raw=True)
    rows, pages = splits.x_train, splits.x_train.pages
    before = rows[:].clone()
    assert mapped() > 0
    pages.release()
    assert mapped() == 0
    assert torch.equal(rows[:], before)  # read again from the page cache: the same images


def test_the_evaluation_converts_one_batch_at_a_time(tmp_path, cache_dir, monkeypatch):
    root = folder(tmp_path / "imgs", per_class=40, size=8)
    splits = load_splits(DataSettings(dataset=f"folder:{root}"), raw=True)
    per_image = 4 * 3 * 8 * 8
    monkeypatch.setattr(train, "EVAL_BYTES", 5 * per_image)  # 5 images a batch: dev (24) is 5 batches
    live = LiveFloats(monkeypatch)
    fit(TrainConfig(model="mlp", depth=1, width=8, epochs=2, batch_size=4, seed=0), splits, device="cpu")
    # a training batch lives until the next one's graph replaces it: a few batches at once, never a split
    assert live.batch == 5 and 0 < live.most < len(splits.x_dev) < len(splits.x_train)


def test_image_bounds_hold_one_chunk_at_a_time(monkeypatch):
    x = torch.randint(0, 256, (5000, 1, 2, 2), dtype=torch.uint8)
    rows = Rows(x, torch.arange(5000), "/255", torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    live = LiveFloats(monkeypatch)
    lo, hi = attacks.image_bounds(rows, True)
    assert (lo, hi) == (float(x.min()) / 255, float(x.max()) / 255)
    assert live.most <= 4096  # the old list of chunks held all 5000 at once


def test_gather_copies_the_rows_a_window_at_a_time_and_gives_each_window_back(monkeypatch):
    x = torch.randint(0, 256, (300, 3, 4, 4), dtype=torch.uint8)
    rows = np.sort(np.random.default_rng(0).choice(300, 170, replace=False))
    monkeypatch.setattr(pixels, "CHUNK_BYTES", 48 * 20)  # 20 rows a window: 9 windows

    class Pages:
        calls: list[tuple[int, int]] = []

        def release(self, lo=0, hi=None):
            self.calls.append((lo, hi))

    pages = Pages()
    got = gather(x, rows, pages)
    assert torch.equal(got, x[torch.from_numpy(rows)]) and got.dtype == torch.uint8
    assert len(pages.calls) == 9 and pages.calls[0] == (rows[0], rows[19] + 1) and pages.calls[-1][1] == rows[-1] + 1
    # statistics from the gathered copy are those of the rows of the whole array, to the bit
    for how in ("/255", "*1/255", "float"):
        a, b = channel_stats(got, None, how), channel_stats(x, rows, how)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(b[0], channel_stats(to_float(x, how), rows, how)[0])


def test_a_streamed_split_pickles_without_its_mapping(tmp_path, cache_dir):
    root = folder(tmp_path / "imgs", per_class=10, size=8)
    splits = load_splits(DataSettings(dataset=f"folder:{root}", stream=True), raw=True)
    back = pickle.loads(pickle.dumps(splits.x_train))
    assert back.pages is None and splits.x_train.pages is not None
    assert torch.equal(back[:], splits.x_train[:])


def test_the_splits_count_their_reads_on_their_one_mapping(tmp_path, cache_dir, monkeypatch):
    root = folder(tmp_path / "imgs", per_class=10, size=8)
    splits = load_splits(DataSettings(dataset=f"folder:{root}", stream=True), raw=True)
    pages, row = splits.x_train.pages, 3 * 8 * 8
    assert splits.x_dev.pages is pages  # one file, one count: the bound holds for train and dev together
    monkeypatch.setattr(pixels, "STREAM_HOLD", 1 << 30)
    pages.release()
    splits.x_train[:2], splits.x_dev[torch.tensor([2, 0, 1])]
    assert pages.unreleased == 5 * row
    monkeypatch.setattr(pixels, "STREAM_HOLD", 4 * row)
    splits.x_dev[:1]
    assert pages.unreleased == 0  # over the bound: everything given back, the count starts again
