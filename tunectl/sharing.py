"""Handing the parent's splits to worker processes: tensors in shared memory, mapped files by descriptor, no copy.

`tune --jobs N` loads and splits the data once, in the parent; its workers load nothing. Before
they start, `share(splits)` prepares the splits for the trip: a tensor held in the parent's own
memory moves into shared memory, in place and once (torch.multiprocessing's pickler then sends a
file descriptor, never the bytes, and the parent keeps using the same pages); a tensor that is a
view of a memory-mapped file (the folder decode cache's `images.npy`) is sent as that file's open
descriptor and offset, and each worker maps the same file privately, so all of them read the
same pages of the page cache and a data set larger than memory stays on disk. N workers then
hold one copy of the data between them, and a worker starts in the time it takes to map it.

Why a descriptor and not the file's path: the file the parent mapped is the one the split was
checked on; a `tunectl cache clear` (or a rebuilt entry) between the parent's load and a worker's
start must not hand the worker other bytes. A killed worker only drops its own mapping: the
parent's pages, and the other workers', stay as they are.
"""

from __future__ import annotations

import copy
import mmap
import os
import sys
from typing import Any

import numpy as np
import torch


class MappedFile:
    """A tensor that is a view of a file the parent has mapped: sent as (descriptor, offset), mapped again
    on arrival (copy-on-write: a worker's write, if any, stays in that worker)."""

    def __init__(self, t: torch.Tensor, path: str, file_offset: int):
        self.file = open(path, "rb")  # held open while workers start: they map this very file
        self.path, self.offset = path, file_offset
        self.nbytes, self.dtype = t.untyped_storage().nbytes(), t.dtype
        self.shape, self.stride, self.storage_offset = tuple(t.shape), tuple(t.stride()), t.storage_offset()

    def __reduce__(self):
        from multiprocessing.reduction import DupFd  # a descriptor for the process being started

        return _map, (DupFd(self.file.fileno()), self.offset, self.nbytes, self.dtype, self.shape, self.stride,
                      self.storage_offset)


# this worker's mappings of the parent's files: a tensor's storage address -> (the mapping, where byte 0 is in it),
# so that `received` can hand a streamed split the mapping whose pages it gives back (cache.Pages)
_MAPPED: dict[int, tuple[mmap.mmap, int]] = {}


def _map(fd, offset: int, nbytes: int, dtype: torch.dtype, shape, stride, storage_offset: int) -> torch.Tensor:
    """In the worker: the parent's tensor, from the same file's pages (MAP_PRIVATE, as numpy's mode 'c')."""
    fd = fd.detach()
    try:
        start = offset - offset % mmap.ALLOCATIONGRANULARITY  # mmap's offset must be page-aligned
        region = mmap.mmap(fd, nbytes + offset - start, flags=mmap.MAP_PRIVATE,
                           prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=start)
    finally:
        os.close(fd)  # the mapping keeps the file; the descriptor is no longer needed
    raw = torch.from_numpy(np.frombuffer(region, dtype=np.uint8, count=nbytes, offset=offset - start))
    _MAPPED[raw.untyped_storage().data_ptr()] = (region, offset - start)
    return raw.view(dtype).as_strided(shape, stride, storage_offset)


def received(obj: Any) -> Any:
    """In the worker, once the splits arrived: each streamed split (pixels.Rows, whose `pages` cannot travel)
    gets the Pages of the file mapping it reads, one per mapping (the train and dev splits count their reads
    on it together, as in the parent), so the worker gives the file's pages back as it streams, as the
    parent does, instead of holding every page it ever read."""
    from tunectl.cache import Pages

    memo: dict[int, Pages] = {}
    for o in _nodes(obj):
        base = getattr(o, "base", None)
        if not (getattr(o, "stream", False) and getattr(o, "pages", 1) is None and isinstance(base, torch.Tensor)):
            continue
        key = base.untyped_storage().data_ptr()
        if key in _MAPPED and base.numel():
            if key not in memo:
                region, at = _MAPPED[key]
                size = base.element_size()
                memo[key] = Pages(region, at + base.storage_offset() * size, base[0].numel() * size)
            o.pages = memo[key]
    return obj


def _vma(address: int) -> tuple[int, int, int, str, int] | None:
    """The mapping of this process that holds `address`: (start, end, file offset, path, inode); Linux only."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                lo, hi = (int(a, 16) for a in parts[0].split("-"))
                if lo <= address < hi:
                    path = parts[5].rstrip("\n") if len(parts) == 6 else ""
                    return lo, hi, int(parts[2], 16), path, int(parts[4])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _written(start: int) -> bool:
    """Has this process written to the private file mapping at `start` (copy-on-write pages)? Then the file
    no longer holds what the tensor holds. Unknown counts as written."""
    try:
        with open("/proc/self/smaps") as f:
            inside = False
            for line in f:
                head = line.split(maxsplit=1)[0]
                if "-" in head and not head.endswith(":"):
                    inside = int(head.split("-")[0], 16) == start
                elif inside and head == "Anonymous:":
                    return int(line.split()[1]) > 0
    except (OSError, ValueError):
        pass
    return True


def mapped_file(t: torch.Tensor) -> tuple[str, int] | None:
    """(path, file offset) when all of `t`'s storage is an unwritten mapping of one regular file, else None."""
    if sys.platform != "linux" or t.device.type != "cpu":
        return None
    storage = t.untyped_storage()
    ptr, nbytes = storage.data_ptr(), storage.nbytes()
    vma = _vma(ptr) if nbytes else None
    if vma is None:
        return None
    lo, hi, offset, path, inode = vma
    if not path.startswith("/") or path.endswith(" (deleted)") or ptr + nbytes > hi or _written(lo):
        return None
    try:
        if os.stat(path).st_ino != inode:  # replaced since it was mapped: the file is not these bytes
            return None
    except OSError:
        return None
    return path, offset + ptr - lo


SHM = "/dev/shm"  # where torch's shared memory lives on Linux (shm_open)


def check_room(nbytes: int) -> None:
    """Refuse (OSError) before torch would fill a small /dev/shm (a container's default is 64 MB)."""
    if sys.platform != "linux" or not os.path.isdir(SHM):
        return
    import shutil

    free = shutil.disk_usage(SHM).free
    if nbytes > free:
        raise OSError(f"{SHM} has {free / 2**20:.0f} MiB free, the data need {nbytes / 2**20:.0f} MiB")


def share(obj: Any, _memo: dict[int, Any] | None = None) -> Any:
    """`obj` (Splits, pixels.Rows, tuples, lists, dicts of them) ready to send to worker processes: each
    mapped-file tensor replaced by its `MappedFile`, every other CPU tensor moved to shared memory in place.
    The original objects are left as they are (apart from where their tensors' bytes live)."""
    memo = {} if _memo is None else _memo
    if isinstance(obj, torch.Tensor):
        if obj.device.type != "cpu":
            return obj
        key = (obj.untyped_storage().data_ptr(), tuple(obj.shape), obj.stride(), obj.storage_offset())
        if key not in memo:  # the train and dev rows of one image array: one stand-in, mapped once
            where = mapped_file(obj)
            if not where and not obj.is_shared():
                check_room(obj.untyped_storage().nbytes())
            memo[key] = MappedFile(obj, *where) if where else obj.share_memory_()  # in place: the same pages
        return memo[key]
    if isinstance(obj, (list, tuple)):
        return type(obj)(share(v, memo) for v in obj)
    if isinstance(obj, dict):
        return {k: share(v, memo) for k, v in obj.items()}
    if type(obj).__module__.startswith("tunectl.") and hasattr(obj, "__dict__"):
        out = copy.copy(obj)
        out.__dict__.update({k: share(v, memo) for k, v in vars(obj).items()})
        return out
    return obj


def backing(t: torch.Tensor) -> str:
    """Where a tensor's bytes live, for tests and benchmarks: 'shared memory', 'file PATH' or 'private'."""
    if t.is_shared():
        return "shared memory"
    where = mapped_file(t)
    return f"file {where[0]}" if where else "private"


def nbytes(obj: Any) -> int:
    """The bytes of the distinct CPU storages under `obj` (as `share` walks it): what workers need not load."""
    seen = {o.untyped_storage().data_ptr(): o.untyped_storage().nbytes() for o in _nodes(obj)
            if isinstance(o, torch.Tensor) and o.device.type == "cpu"}
    return sum(seen.values())


def _nodes(obj: Any):
    """`obj` and everything under it, as `share` walks it: list and tuple items, dict values, the attributes
    of tunectl's own objects (a Splits, a pixels.Rows); a tensor is a leaf."""
    yield obj
    if isinstance(obj, (list, tuple)):
        children = list(obj)
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif type(obj).__module__.startswith("tunectl.") and hasattr(obj, "__dict__"):
        children = list(vars(obj).values())
    else:
        return
    for child in children:
        yield from _nodes(child)
