"""The decode-once cache of folder data sets: a uint8 .npy of the images, the labels and a manifest, keyed by a fingerprint.

A `folder:` data set is decoded once; every later command (and every worker of a `tune --jobs N`)
maps the same `images.npy` and reads no image. The key is a fingerprint of what the images are
made from: the folder, each file's path under it, size and modification time, the class names and
the image size, so a file added, removed, replaced or touched gives a new cache, never a stale one.

Where: TUNECTL_CACHE, or ~/.cache/tunectl. An entry is `folders/<key>/` holding images.npy,
labels.npy and manifest.json. It is written in a hidden sibling folder and renamed into place
in one step, under a lock on `<key>.lock`: a kill -9 leaves no half entry (only a hidden folder,
removed by the next build or `tunectl cache clear`), and two processes decoding the same folder
at once decode it once (the second waits for the first, then maps its entry).

Progress is reported through a callback (`reporting(on_progress, on_note)` around a command's
core call): the core never draws.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import mmap
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from tunectl.errors import DataError, RunError

VERSION = 1  # of the entry's layout and of what the fingerprint covers
OnProgress = Callable[[int, int], Any]  # (images decoded, images in all)
OnNote = Callable[[str], Any]
_hooks = threading.local()


@contextmanager
def reporting(on_progress: OnProgress | None = None, on_note: OnNote | None = None) -> Iterator[None]:
    """Decode progress and notes go to these callbacks while the block runs (the CLI draws them)."""
    old = getattr(_hooks, "value", (None, None))
    _hooks.value = (on_progress, on_note)
    try:
        yield
    finally:
        _hooks.value = old


def _progress(done: int, total: int) -> None:
    cb = getattr(_hooks, "value", (None, None))[0]
    if cb is not None:
        cb(done, total)


def _note(text: str) -> None:
    cb = getattr(_hooks, "value", (None, None))[1]
    if cb is not None:
        cb(text)


def cache_root() -> Path:
    """TUNECTL_CACHE, or ~/.cache/tunectl. A path that is a file (or lies under one) is refused."""
    given = os.environ.get("TUNECTL_CACHE", "").strip()
    root = Path(given).expanduser() if given else Path.home() / ".cache" / "tunectl"
    shown = f"TUNECTL_CACHE={given}" if given else f"the cache folder {root}"
    for p in (root, *root.parents):
        if p.exists() and not p.is_dir():
            raise DataError(f"{shown}: {p} is a file, not a folder; point TUNECTL_CACHE at a folder "
                            f"(or unset it for ~/.cache/tunectl)")
    return root


def folders_dir() -> Path:
    return cache_root() / "folders"


def scan(root: Path):
    """The folder as torchvision's ImageFolder sees it (one sub-folder per class), no image opened.
    Raises FileNotFoundError or OSError as ImageFolder does (no class folder, no image)."""
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(root))


def folder_key(root: Path, image_size: int | None) -> str:
    """The key of the folder as it is now (see `fingerprint`)."""
    folder = scan(root)
    return fingerprint(root, folder.samples, folder.classes, image_size)


def fingerprint(root: Path, samples: Sequence[tuple[str, int]], classes: Sequence[str],
                image_size: int | None) -> str:
    """The key: the folder, each file's path under it, size and mtime (ns), the classes and the image size.
    The folder's own path is part of it: two copies with equal names, sizes and times (an archive
    unpacked twice) may still hold different pixels."""
    h = hashlib.sha256(json.dumps({"version": VERSION, "root": str(Path(root).resolve()), "image_size": image_size,
                                   "classes": list(classes)}).encode())
    for path, label in samples:
        st = os.stat(path)
        h.update(f"\0{os.path.relpath(path, root)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


class Pages:
    """The mapping of an entry's images.npy, whose pages a reader gives back once it has copied them
    (the kernel's MADV_DONTNEED: a clean page of a file is dropped from this process and read again
    from the page cache if it is touched again). The mapping stays valid; only the process's share
    of the file's memory falls. Nothing writes to the mapping: a written (copy-on-write) page given
    back would lose the write."""

    def __init__(self, mm: mmap.mmap, offset: int, row_bytes: int):
        self.mm, self.offset, self.row_bytes = mm, offset, row_bytes
        self.unreleased = 0  # bytes read through the mapping since all of it was last given back (readers count)

    def release(self, lo: int = 0, hi: int | None = None) -> None:
        """Give back the pages that hold rows lo..hi-1 (all rows by default)."""
        if hi is None:
            self.unreleased = 0
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if advice is None or self.mm.closed:
            return
        start = (self.offset + lo * self.row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        stop = len(self.mm) if hi is None else min(len(self.mm), self.offset + hi * self.row_bytes)
        if stop > start:
            try:
                self.mm.madvise(advice, start, stop - start)
            except (OSError, ValueError):  # advice only: the pages stay, nothing is wrong
                pass


def map_images(path: Path) -> tuple[np.ndarray, Pages]:
    """images.npy mapped copy-on-write (shared pages, never written), with its Pages."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(f))
        offset = f.tell()
        if dtype != np.uint8 or fortran:
            raise ValueError(f"{path}: not a C-ordered uint8 array")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    n = int(np.prod(shape))
    images = np.frombuffer(mm, dtype=np.uint8, count=n, offset=offset).reshape(shape)
    return images, Pages(mm, offset, n // max(1, shape[0]) if shape else 1)


@dataclass
class Entry:
    """One cache entry: the images (uint8, N x C x H x W, memory-mapped), the labels and the manifest."""

    images: np.ndarray
    labels: np.ndarray
    manifest: dict[str, Any]
    path: Path | None  # None: decoded into memory, not cached (no room on the cache's disk)
    hit: bool = False
    pages: Pages | None = None  # the images' mapping (None: decoded into memory)


def _read(path: Path, key: str) -> Entry | None:
    """The entry at `path` if it is whole and is the one `key` names, else None."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("key") != key or manifest.get("version") != VERSION:
            return None
        images, pages = map_images(path / "images.npy")
        labels = np.load(path / "labels.npy")
    except (OSError, ValueError, json.JSONDecodeError, EOFError):
        return None
    if images.dtype != np.uint8 or list(images.shape) != manifest.get("shape") or len(labels) != len(images):
        return None
    return Entry(images, labels, manifest, path, hit=True, pages=pages)


@contextmanager
def _lock(path: Path, waiting: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _note(waiting)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_build(where: str, key: str, n: int, labels: Sequence[int], decode: Callable[[int], np.ndarray],
                  describe: dict[str, Any], finish: Callable[[np.ndarray], dict[str, Any]] | None = None) -> Entry:
    """The entry `key` names, decoded now if it is not cached yet.

    decode(i) -> image i as uint8 C x H x W (raising DataError for a bad file); every image must
    have the first one's shape. describe: what the manifest records about the source (its path,
    classes, image size). finish(images) -> more manifest fields, computed once at build time."""
    try:
        base = folders_dir()
        base.mkdir(parents=True, exist_ok=True)
        final = base / key
        hit = _read(final, key)
        if hit is not None:
            return hit
        lock = base / f"{key}.lock"
        with _lock(lock, f"{where}: another process is decoding these images into the cache; waiting for it"):
            hit = _read(final, key)  # the other process finished while we waited
            if hit is not None:
                return hit
            for stale in base.glob(f".{key}.*.partial"):  # a build killed before its rename
                shutil.rmtree(stale, ignore_errors=True)
            if final.exists():  # damaged or from another version: replaced whole
                old = base / f".{key}.{os.getpid()}.old.partial"
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            return _build(where, base, key, n, labels, decode, describe, finish)
    except OSError as e:
        _note(f"{where}: cannot use the cache in {cache_root()} ({e.strerror or e}); decoding into memory "
              f"(set TUNECTL_CACHE to a writable folder to decode once)")
        return _decode_all(where, n, labels, decode, None, describe, finish, key)


def _build(where: str, base: Path, key: str, n: int, labels, decode, describe, finish) -> Entry:
    tmp = base / f".{key}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    first = decode(0)
    need = n * first.size + (1 << 20)
    if shutil.disk_usage(base).free < need:
        _note(f"{where}: {need / 2**30:.2f} GiB do not fit on the cache's disk ({cache_root()}); decoding into "
              f"memory (set TUNECTL_CACHE to a folder on a larger disk to decode once)")
        return _decode_all(where, n, labels, decode, first, describe, finish, key)
    tmp.mkdir(parents=True)
    try:
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, *first.shape))
        _fill(where, images, decode, first)
        images.flush()
        np.save(tmp / "labels.npy", np.asarray(labels, dtype=np.int64))
        manifest = {"version": VERSION, "key": key, "shape": list(images.shape), "n": n,
                    "bytes": int(images.nbytes), "created": time.strftime("%Y-%m-%d %H:%M:%S"), **describe,
                    **(finish(images) if finish else {})}
        del images
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        for name in ("images.npy", "labels.npy", "manifest.json"):
            _fsync(tmp / name)
        try:
            tmp.rename(base / key)  # the entry appears whole, in one step
        except OSError:
            if _read(base / key, key) is None:  # not another process's whole entry: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race: map its entry
    except BaseException:  # a bad image, Ctrl-C, a full disk: no half entry left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    entry = _read(base / key, key)
    if entry is None:
        raise RunError(f"{where}: the cache entry {base / key} could not be read back; run `tunectl cache clear`")
    entry.hit = False
    return entry


def _fill(where: str, images: np.ndarray, decode, first: np.ndarray) -> None:
    n, shape = len(images), first.shape
    images[0] = first
    _progress(1, n)
    last = time.monotonic()
    for i in range(1, n):
        image = decode(i)
        if image.shape != shape:
            raise DataError(f"{where}: images have mixed sizes {sorted({tuple(shape), tuple(image.shape)})}; pass "
                            f"--image-size N to resize them (image {i + 1} of {n} differs from the first)")
        images[i] = image
        if time.monotonic() - last > 0.1 or i == n - 1:
            _progress(i + 1, n)
            last = time.monotonic()


def _decode_all(where, n, labels, decode, first, describe, finish, key) -> Entry:
    """No cache (an unwritable or full cache disk): decode into this process's memory, as bytes."""
    first = decode(0) if first is None else first
    images = np.empty((n, *first.shape), dtype=np.uint8)
    _fill(where, images, decode, first)
    manifest = {"version": VERSION, "key": key, "shape": list(images.shape), "n": n, "bytes": int(images.nbytes),
                **describe, **(finish(images) if finish else {})}
    return Entry(images, np.asarray(labels, dtype=np.int64), manifest, None)


# ----------------------------------------------------------------------------- tunectl cache list / clear


def entries() -> list[dict[str, Any]]:
    """Every whole entry (its manifest, folder and size on disk), newest first, and each hidden
    leftover of a killed build as {"partial": True}."""
    base = folders_dir()
    if not base.is_dir():
        return []
    out = []
    for p in sorted(base.iterdir()):
        if p.name.endswith(".partial") and p.is_dir():
            out.append({"key": p.name.split(".")[1], "path": str(p), "partial": True, "bytes": _size(p)})
            continue
        if not p.is_dir() or p.name.startswith("."):
            continue
        try:
            m = json.loads((p / "manifest.json").read_text())
        except (OSError, ValueError):
            m = {}
        out.append({"key": p.name, "path": str(p), "partial": False, "bytes": _size(p),
                    "source": m.get("source"), "n": m.get("n"), "shape": m.get("shape"),
                    "image_size": m.get("image_size"), "created": m.get("created"),
                    "current": _current(m)})
    return sorted(out, key=lambda e: e.get("created") or "", reverse=True)


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.iterdir() if f.is_file())


def _current(m: dict[str, Any]) -> bool | None:
    """Does the entry's source folder still give this key? None: the folder is gone."""
    src = m.get("source")
    if not src or not Path(src).is_dir():
        return None
    try:
        return folder_key(Path(src), m.get("image_size")) == m.get("key")
    except OSError:  # no class folder or no image left
        return False


def listing() -> dict[str, Any]:
    """`tunectl cache list`: where the cache is, its entries and their bytes in all."""
    found = entries()
    return {"cache": str(cache_root()), "entries": found, "bytes": sum(e["bytes"] for e in found)}


def clear(stale_only: bool = False) -> dict[str, Any]:
    """Remove the entries (all, or those whose folder is gone or changed) and any leftover of a
    killed build. An entry being built right now is left alone; a process mapping an entry keeps
    its mapping (the file goes when the last one closes it)."""
    base = folders_dir()
    removed, kept, freed = [], [], 0
    for e in entries():
        if stale_only and not e["partial"] and e["current"]:
            kept.append(e)
            continue
        lock = base / f"{e['key']}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                kept.append(e)  # being built by a live process
                continue
            path = Path(e["path"])
            gone = base / f".{e['key']}.{os.getpid()}.gone.partial"
            try:
                path.rename(gone)
            except FileNotFoundError:
                continue
            shutil.rmtree(gone, ignore_errors=True)
            lock.unlink(missing_ok=True)
            removed.append(e)
            freed += e["bytes"]
        finally:
            os.close(fd)
    return {"cache": str(cache_root()), "removed": removed, "kept": kept, "freed_bytes": freed}
