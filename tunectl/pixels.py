"""Images kept as bytes: uint8 rows turned into scaled floats one mini-batch at a time, on the device.

An image data set read as bytes (a folder's decode cache, MNIST, Fashion-MNIST, CIFAR-10, an npz
whose x is uint8) stays uint8: a quarter of float32's memory, and a mapped cache file is shared
by every process that maps it. `Rows` is a split of such a data set (the whole array and the
split's indices, no copy); indexing it gathers the rows, converts them to float exactly as the
float32 path converts the whole data set, and standardizes them with the training split's
mean and std. Same operations on the same values: the numbers trained on are the float32
path's, to the bit on the CPU.

In memory (the default), each split's rows are gathered once into their own uint8 tensor
(`gather`), a window at a time, and the mapped pages read are given back as each window is
copied: the process holds the train and dev bytes and nothing of the test split (whose rows
share pages with the others', so a mapping of the whole file would hold them all).

Streaming (a data set larger than a share of memory, or --stream): the array stays on the host
(memory-mapped) and each batch is read in index order (sorted, then put back in the batch's
order), so the pages come from the file front to back within a batch and the batches
themselves keep the shuffled order of the in-memory path: the same batches, the same results.
Every STREAM_HOLD bytes read, the mapped pages are given back (`pages.release()`, the kernel's
MADV_DONTNEED): the process holds a few batches, not the file, however large it is.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

# how a source turns its bytes into floats; the float32 path applies the same one to the whole data set
CONVERSIONS = ("/255", "*1/255", "float")  # torchvision's data sets, torchvision's ToDtype(scale=True), npz

CHUNK_BYTES = 8 << 20  # float64 bytes per pass when computing statistics or a digest: bounded temporary memory

STREAM_SHARE = 0.5  # stream when the bytes are more than this share of the memory available

STREAM_HOLD = 64 << 20  # streaming: give the mapped pages back after this many bytes read (the process's bound)


def to_float(x: torch.Tensor, how: str) -> torch.Tensor:
    """Bytes -> float32, as the source's float32 path does it (the bits must match). Always a new tensor."""
    x = x.to(torch.float32, copy=True)
    if how == "/255":
        return x.div_(255.0)
    if how == "*1/255":
        return x.mul_(1.0 / 255)  # what torchvision's v2.ToDtype(torch.float32, scale=True) computes
    return x


def _chunks(x: torch.Tensor, rows: np.ndarray | None, how: str | None, pages=None):
    """The rows of x (all, or `rows`, sorted) as float32, CHUNK at a time, converted if x holds bytes.
    pages: x's mapping (cache.Pages), whose pages each chunk read are given back once it is converted."""
    n = len(x) if rows is None else len(rows)
    step = max(1, CHUNK_BYTES // (8 * max(1, x[0].numel())))  # depends on the shape only: the same for bytes and floats
    for i in range(0, n, step):
        part = x[i:i + step] if rows is None else x[torch.from_numpy(np.asarray(rows[i:i + step]))]
        part = to_float(part, how) if how and part.dtype == torch.uint8 else part
        if pages is not None:
            pages.release(*((i, i + len(part)) if rows is None else (int(rows[i]), int(rows[i + len(part) - 1]) + 1)))
        yield part


def channel_stats(x: torch.Tensor, rows: np.ndarray | None, how: str | None,
                  pages=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (unbiased) of x[rows] (rows None: all of x), summed in float64 a chunk at a time.

    The same for bytes and for their float32 conversion (same values, same chunks, same sums),
    and without ever holding the training split as floats: one chunk's float64 copy at a time,
    worked on in place. Shapes (1, C, 1, ...), float32."""
    dims = [0, *range(2, x.ndim)]
    total, count = torch.zeros(x.shape[1], dtype=torch.float64), 0
    for part in _chunks(x, rows, how, pages):
        total += part.double().sum(dim=dims)
        count += part.numel() // x.shape[1]
    mean = total / max(1, count)
    shape = (1, x.shape[1], *([1] * (x.ndim - 2)))
    sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for part in _chunks(x, rows, how, pages):
        d = part.double().sub_(mean.view(shape))  # (x - mean) ** 2, in one float64 buffer
        sq += d.mul_(d).sum(dim=dims)
    std = torch.sqrt(sq / (count - 1)) if count > 1 else torch.full_like(sq, float("nan"))
    return mean.view(shape).to(torch.float32), std.view(shape).to(torch.float32)


def float_digest(x: torch.Tensor, how: str | None, pages=None) -> str:
    """The data hash of the float32 path (SHA-256 of the float32 bytes, first 16 hex digits), from
    the bytes a chunk at a time: a study tuned on floats and one tuned on bytes agree."""
    h = hashlib.sha256()
    for part in _chunks(x, None, how, pages):
        h.update(part.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def gather(x: torch.Tensor, rows: np.ndarray, pages=None) -> torch.Tensor:
    """x[rows] (rows sorted) as a new uint8 tensor of its own, read CHUNK_BYTES at a time; the mapped
    pages of each window are given back once it is copied, so the process never holds the file."""
    out = torch.empty((len(rows), *x.shape[1:]), dtype=x.dtype)
    step = max(1, CHUNK_BYTES // max(1, x[0].numel()))
    for i in range(0, len(rows), step):
        part = rows[i:i + step]
        torch.index_select(x, 0, torch.from_numpy(np.asarray(part)), out=out[i:i + len(part)])
        if pages is not None:
            pages.release(int(part[0]), int(part[-1]) + 1)
    return out


def available_memory() -> int | None:
    """Bytes the kernel says a new process can use without swapping (MemAvailable), else the free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def should_stream(nbytes: int) -> bool:
    """Larger than STREAM_SHARE of the memory available: read batches from the mapped file instead."""
    free = available_memory()
    return free is not None and nbytes > STREAM_SHARE * free


class Rows:
    """A split of an image data set held as bytes: `base` (all N images, uint8, maybe memory-mapped)
    and `index` (the split's rows). Indexing with a slice or an index tensor gives scaled float32
    images on `device`; len() and .shape are the split's. `.to(device)` keeps the bytes on the
    host when streaming, else moves the split's bytes to the device once (uint8: 4x less than floats)."""

    def __init__(self, base: torch.Tensor, index: torch.Tensor, how: str, mean: torch.Tensor, std: torch.Tensor,
                 stream: bool = False, device: torch.device | str = "cpu", pages=None):
        self.base, self.index, self.how, self.stream = base, index, how, stream
        self.device = torch.device(device)
        self.mean, self.std = mean.to(self.device), std.to(self.device)
        self.pages = pages  # streaming: base's mapping (cache.Pages), whose pages are given back every STREAM_HOLD bytes

    def __getstate__(self) -> dict:
        """Pickled (sent to a worker, copied): without `pages`, this process's own mapping, which cannot travel."""
        return {**self.__dict__, "pages": None}

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.index), *self.base.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # what indexing gives

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def nbytes(self) -> int:
        return len(self.index) * self.base[0].numel()

    def to(self, device: torch.device | str, *args, **kwargs) -> "Rows":
        device = torch.device(device)
        if device == self.device:
            return self
        if self.stream or device.type == "cpu":  # bytes stay on the host; batches go to `device`
            return Rows(self.base, self.index, self.how, self.mean, self.std, self.stream, device, self.pages)
        if self.base.device == device:
            return Rows(self.base, self.index, self.how, self.mean, self.std, False, device)
        moved = self.base.index_select(0, self.index.to(self.base.device)).to(device)
        return Rows(moved, torch.arange(len(moved), device=device), self.how, self.mean, self.std, False, device)

    def take(self, key) -> torch.Tensor:
        """The bytes of the rows `key` selects (a slice or an index tensor), on the host or where `base` is."""
        pos = self.index[key] if isinstance(key, slice) else self.index[key.to(self.index.device)]
        if pos.ndim == 0:
            pos = pos.view(1)
        if self.stream:  # read in file order, then give the batch back in its own (shuffled) order
            order = torch.argsort(pos)
            got = self.base.index_select(0, pos[order])
            out = torch.empty_like(got)
            out[order] = got
            if self.pages is not None:  # counted on the mapping: the train and dev splits read the same file
                self.pages.unreleased += got.numel()
                if self.pages.unreleased > STREAM_HOLD:
                    self.pages.release()
            return out
        return self.base.index_select(0, pos.to(self.base.device))

    def __getitem__(self, key) -> torch.Tensor:
        single = isinstance(key, int)
        if single:
            key = torch.tensor([key])
        xb = self.take(key).to(self.device, non_blocking=True)
        xb = to_float(xb, self.how).sub_(self.mean).div_(self.std)  # in place: the float32 path's (x - mean) / std
        return xb[0] if single else xb

    def floats(self) -> torch.Tensor:
        """The whole split as scaled float32 (4x the memory): for callers that need one tensor."""
        return self[:]
