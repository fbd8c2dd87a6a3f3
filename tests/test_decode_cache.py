"""The decode-once cache of folder: data sets, images kept as bytes, and streaming (issue 18).

Real folders of PNGs, real decoding, real training: the cache hit reads no image, a changed
folder gets a new entry, a kill -9 mid-build leaves no entry that a later command would trust,
two processes building at once end with one whole entry, and the numbers trained on are the
float32 path's to the bit (bytes against floats, streamed against in memory).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import curve_without_time, invoke, ok_json, write_idx
from tunectl import cache
from tunectl.config import TrainConfig
from tunectl.data import DataSettings, load_splits
from tunectl.pixels import Rows, channel_stats, float_digest, to_float
from tunectl.sources import DataSpec, load_dataset
from tunectl.train import fit

PY = sys.executable


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """This test's own cache (the session's is shared by every other test)."""
    where = tmp_path / "cache"
    monkeypatch.setenv("TUNECTL_CACHE", str(where))
    return where


def folder(root: Path, per_class: int = 20, size: int = 10, classes=("cat", "dog", "eel"), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i:04d}.png")
    return root


def entries(where: Path) -> list[Path]:
    base = where / "folders"
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []


def load(root: Path, **kw):
    return load_dataset(DataSpec(f"folder:{root}", **kw), raw=True)


# ----------------------------------------------------------------------------- the cache


def test_the_second_load_maps_the_cache_and_reads_no_image(tmp_path, cache_dir):
    root = folder(tmp_path / "imgs")
    first = load(root)
    assert first.x.dtype == torch.uint8 and first.pixels == "*1/255"
    (entry,) = entries(cache_dir)
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["n"] == 60 and manifest["shape"] == [60, 3, 10, 10] and manifest["source"] == str(root.resolve())
    # overwrite an image with other pixels of the same size, then give it back its size and mtime:
    # the fingerprint cannot see it, so the second load shows whether it opened any image
    png = root / "cat" / "0000.png"
    st = png.stat()
    Image.fromarray(np.zeros((10, 10, 3), dtype=np.uint8)).save(png)
    with open(png, "r+b") as f:
        f.truncate(st.st_size)
    os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = load(root)
    assert torch.equal(second.x, first.x) and torch.equal(second.y, first.y)  # the cache's pixels, not the file's
    assert entries(cache_dir) == [entry]


def test_a_changed_folder_gets_a_new_entry_never_a_stale_one(tmp_path, cache_dir):
    root = folder(tmp_path / "imgs")
    before = load(root)
    png = root / "dog" / "0003.png"
    new = np.full((10, 10, 3), 7, dtype=np.uint8)
    Image.fromarray(new).save(png)  # touched and rewritten
    after = load(root)
    i = 20 + 3  # ImageFolder's order: class by class, files sorted
    assert torch.equal(after.x[i], torch.from_numpy(new).permute(2, 0, 1)) and not torch.equal(after.x, before.x)
    (root / "eel" / "0000.png").unlink()  # a file removed
    assert len(load(root).x) == 59
    Image.fromarray(new).save(root / "eel" / "extra.png")  # a file added
    assert len(load(root).x) == 60
    assert load(root, image_size=6).x.shape[1:] == (3, 6, 6)  # another image size: another entry
    assert len(entries(cache_dir)) == 5
    listing = ok_json(invoke("cache", "list", "--json"))
    assert [e["current"] for e in listing["entries"]].count(True) == 2  # the folder as it is now, at 10 and 6 px
    cleared = ok_json(invoke("cache", "clear", "--stale", "--json"))
    assert len(cleared["removed"]) == 3 and len(entries(cache_dir)) == 2
    r = invoke("cache", "clear")
    assert r.exit_code == 0 and r.stdout.startswith("removed 2 entries") and entries(cache_dir) == []
    assert "is empty" in invoke("cache", "list").stdout


def test_a_bad_image_or_mixed_sizes_leave_no_entry(tmp_path, cache_dir):
    root = folder(tmp_path / "imgs")
    (root / "cat" / "0005.png").write_bytes(b"not a png")
    r = invoke("train", "-d", f"folder:{root}", "--epochs", "1", "--out", tmp_path / "run")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "0005.png" in r.stderr, r.stderr
    assert entries(cache_dir) == [] and not any((cache_dir / "folders").glob(".*partial")) and not (tmp_path / "run").exists()
    Image.fromarray(np.zeros((12, 10, 3), dtype=np.uint8)).save(root / "cat" / "0005.png")
    r = invoke("train", "-d", f"folder:{root}", "--epochs", "1", "--out", tmp_path / "run")
    assert r.exit_code == 2 and "mixed sizes" in r.stderr and "--image-size" in r.stderr, r.stderr
    assert entries(cache_dir) == []


@pytest.mark.parametrize("bad", ["file", "under-a-file", "under-a-file-deeper"])
def test_a_cache_path_that_is_a_file_is_one_line(tmp_path, monkeypatch, bad):
    f = tmp_path / "a-file"
    f.write_text("x")
    where = {"file": f, "under-a-file": f / "cache", "under-a-file-deeper": f / "a" / "b"}[bad]
    monkeypatch.setenv("TUNECTL_CACHE", str(where))
    root = folder(tmp_path / "imgs", per_class=4)
    for args in (["cache", "list"], ["cache", "clear"], ["train", "-d", f"folder:{root}", "--epochs", "1",
                                                          "--out", tmp_path / "run"]):
        r = invoke(*args)
        assert r.exit_code == 2, (args, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1 and "TUNECTL_CACHE" in r.stderr and "is a file" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists() and f.read_text() == "x"


def test_an_unwritable_cache_decodes_into_memory_with_a_note(tmp_path, monkeypatch):
    # a folder no one can make, root included (the tests may run as root): one under /proc
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc for a cache folder that cannot be made")
    monkeypatch.setenv("TUNECTL_CACHE", "/proc/self/tunectl-cache")
    root = folder(tmp_path / "imgs", per_class=4)
    r = invoke("train", "-d", f"folder:{root}", "--epochs", "1", "--out", tmp_path / "run", "--json")
    assert r.exit_code == 0 and "note:" in r.stderr and "decoding into memory" in r.stderr, r.stderr
    assert r.stderr.count("note:") == 1 and (tmp_path / "run" / "model.pt").is_file()


# ----------------------------------------------------------------------------- kill -9 and two processes

LOAD = ("import sys, json; from tunectl.sources import DataSpec, load_dataset; "
        "ds = load_dataset(DataSpec('folder:' + sys.argv[1]), raw=True); "
        "from tunectl.data import _data_digest; print(json.dumps([len(ds.x), _data_digest(ds)]))")


def test_kill_9_while_writing_the_cache_leaves_no_half_entry(tmp_path, cache_dir):
    root = folder(tmp_path / "imgs", per_class=300, size=12, classes=("a", "b"))
    env = {**os.environ, "TUNECTL_CACHE": str(cache_dir)}
    p = subprocess.Popen([PY, "-c", LOAD, str(root)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = cache_dir / "folders"
    deadline = time.monotonic() + 120
    while not (base.is_dir() and any(base.glob(".*.partial"))):  # the build has started writing
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert entries(cache_dir) == [], "a killed build left an entry a later command would trust"
    listing = ok_json(invoke("cache", "list", "--json"))
    assert [e["partial"] for e in listing["entries"]] == [True]
    # the next load builds the entry whole and removes the leftover; its data are the float32 path's
    from tunectl.data import _data_digest

    ds = load(root)
    assert len(ds.x) == 600 and len(entries(cache_dir)) == 1 and not any(base.glob(".*.partial"))
    assert _data_digest(ds) == _data_digest(load_dataset(DataSpec(f"folder:{root}")))


def test_two_processes_building_the_same_cache_decode_it_once(tmp_path, cache_dir):
    root = folder(tmp_path / "imgs", per_class=150, size=12, classes=("a", "b"))
    env = {**os.environ, "TUNECTL_CACHE": str(cache_dir)}
    code = ("import sys, json; from tunectl import cache; notes = []; "
            "from tunectl.sources import DataSpec, load_dataset\n"
            "with cache.reporting(None, notes.append): ds = load_dataset(DataSpec('folder:' + sys.argv[1]), raw=True)\n"
            "print(json.dumps([int(ds.x.sum()), notes]))")
    ps = [subprocess.Popen([PY, "-c", code, str(root)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in ps]
    assert all(p.returncode == 0 for p in ps), outs
    (s1, n1), (s2, n2) = (json.loads(o) for o, _ in outs)
    assert s1 == s2  # the same pixels
    assert len(entries(cache_dir)) == 1 and not any((cache_dir / "folders").glob(".*.partial"))
    # at most one decoded: the other found the entry, or waited on the lock (and said so)
    manifest = json.loads((entries(cache_dir)[0] / "manifest.json").read_text())
    assert manifest["n"] == 300
    assert sum("waiting" in t for t in n1 + n2) <= 1


# ----------------------------------------------------------------------------- bytes against floats


def _same_training(a, b, model="mlp", **cfg):
    c = TrainConfig(model=model, epochs=2, seed=3, **cfg)
    ha, hb = fit(c, a, device="cpu"), fit(c, b, device="cpu")
    assert curve_without_time(ha.curve) == curve_without_time(hb.curve)
    assert ha.dev_error == hb.dev_error and ha.train_error == hb.train_error
    return ha


def test_bytes_train_to_the_bit_as_the_float32_path_folder(tmp_path):
    root = folder(tmp_path / "imgs", per_class=30, size=8)
    s = DataSettings(dataset=f"folder:{root}")
    raw, floats = load_splits(s, raw=True), load_splits(s)
    assert isinstance(raw.x_train, Rows) and raw.x_train.base.dtype == torch.uint8
    assert floats.x_train.dtype == torch.float32
    assert raw.manifest == floats.manifest  # the same split and data hash
    assert torch.equal(raw.x_train[:], floats.x_train) and torch.equal(raw.x_dev[:], floats.x_dev)
    _same_training(raw, floats)
    _same_training(raw, floats, model="cnn", augment="light")


def test_bytes_train_to_the_bit_as_the_float32_path_mnist_and_npz(tmp_path, write_mnist):
    write_mnist(tmp_path / "MNIST", n_train=60, n_test=30)
    s = DataSettings(dataset="mnist", data_dir=str(tmp_path))
    raw, floats = load_splits(s, raw=True), load_splits(s)
    assert raw.x_train.base.dtype == torch.uint8 and raw.manifest == floats.manifest
    _same_training(raw, floats)
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "u8.npz", x=rng.integers(0, 256, (90, 1, 6, 6), dtype=np.uint8), y=np.arange(90) % 3)
    s = DataSettings(dataset=f"npz:{tmp_path / 'u8.npz'}")
    raw, floats = load_splits(s, raw=True), load_splits(s)
    assert raw.x_train.base.dtype == torch.uint8 and raw.manifest == floats.manifest
    _same_training(raw, floats, model="cnn")


def test_statistics_and_digest_are_the_same_from_bytes_and_from_floats():
    x = torch.randint(0, 256, (5000, 3, 4, 4), dtype=torch.uint8)
    rows = np.sort(np.random.default_rng(0).choice(5000, 3000, replace=False))
    for how in ("/255", "*1/255", "float"):
        f = to_float(x, how)
        m1, s1 = channel_stats(x, rows, how)
        m2, s2 = channel_stats(f, rows, how)
        assert torch.equal(m1, m2) and torch.equal(s1, s2)
        ref = f[rows].double()
        assert torch.allclose(m1.double().flatten(), ref.mean(dim=(0, 2, 3)), rtol=1e-6)
        assert torch.allclose(s1.double().flatten(), ref.std(dim=(0, 2, 3)), rtol=1e-6)
        assert float_digest(x, how) == float_digest(f, how)


# ----------------------------------------------------------------------------- streaming


def test_streaming_gives_the_same_split_hash_and_results(tmp_path):
    root = folder(tmp_path / "imgs", per_class=30, size=8)
    s = DataSettings(dataset=f"folder:{root}")
    mem, streamed = load_splits(s, raw=True), load_splits(replace(s, stream=True), raw=True)
    assert streamed.x_train.stream and not mem.x_train.stream
    assert mem.manifest == streamed.manifest
    _same_training(mem, streamed, batch_size=16)
    # from the command line: --stream against the default, the same curve and split
    runs = [ok_json(invoke("train", "-d", f"folder:{root}", "--epochs", "2", "--seed", "1", "--device", "cpu",
                           "--out", tmp_path / f"run{i}", "--json", *flag)) for i, flag in enumerate([[], ["--stream"]])]
    assert curve_without_time(runs[0]["history"]) == curve_without_time(runs[1]["history"])
    assert (tmp_path / "run0" / "split.json").read_text() == (tmp_path / "run1" / "split.json").read_text()


def test_a_streamed_batch_comes_back_in_its_own_order():
    base = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 1, 2, 2).contiguous()
    index = torch.tensor([3, 9, 10, 20, 41, 49])
    one, zero = torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    rows = Rows(base, index, "float", zero, one, stream=True)
    got = rows[torch.tensor([5, 0, 3, 1])]
    assert got[:, 0, 0, 0].tolist() == [49.0, 3.0, 20.0, 9.0]
    assert len(rows) == 6 and rows.shape == (6, 1, 2, 2) and rows[1:3][:, 0, 0, 0].tolist() == [9.0, 10.0]


@pytest.mark.parametrize("args", [
    ["train", "-d", "digits", "--stream"],  # digits are floats (0..16), not bytes
    ["train", "-d", "csv:{csv}", "--target", "t", "--stream"],  # a table
    ["tune", "-d", "iris", "--stream", "--trials", "1"],  # tune refuses before any study exists
])
def test_stream_on_data_that_are_not_bytes_is_one_line(tmp_path, args):
    csv = tmp_path / "t.csv"
    csv.write_text("a,t\n" + "".join(f"{i},{i % 2}\n" for i in range(30)))
    r = invoke(*[a.format(csv=csv) for a in args], "--epochs", "1", "--root", tmp_path / "studies") \
        if args[0] == "tune" else invoke(*[a.format(csv=csv) for a in args], "--epochs", "1", "--out", tmp_path / "run")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--stream" in r.stderr and "drop --stream" in r.stderr, \
        (r.stdout, r.stderr)
    assert not (tmp_path / "run").exists() and not (tmp_path / "studies").exists()


def test_stream_takes_no_value(tmp_path):
    r = invoke("train", "-d", "digits", "--stream=yes", "--epochs", "1")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.stderr


def test_a_full_disk_mid_write_leaves_no_entry_and_decodes_into_memory(tmp_path, cache_dir, monkeypatch):
    import errno

    root = folder(tmp_path / "imgs", per_class=5)

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cache, "_fsync", full)  # the last step before the rename
    notes = []
    with cache.reporting(None, notes.append):
        ds = load(root)
    assert len(ds.x) == 15 and ds.x.dtype == torch.uint8
    assert len(notes) == 1 and "No space left on device" in notes[0] and "decoding into memory" in notes[0]
    assert entries(cache_dir) == [] and not any((cache_dir / "folders").glob(".*partial"))
    monkeypatch.undo()
    assert torch.equal(load(root).x, ds.x)  # the next load caches the same pixels
