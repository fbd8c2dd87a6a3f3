"""Sequence data: a CSV's text column read as characters, images and arrays read as steps, token vocabularies.

What `model: rnn` reads, as plain tensors that split, scale and index like any other data:

- `csv:PATH --target COL --sequence COL`: each text (DNA, a sentence) is a row of Unicode code
  points, padded with 0 to the longest. The vocabulary is built later, from the training split
  only (`encode_chars`, called by `data.make_splits`): 0 is padding, 1 every character the
  training split never showed (dev and test may hold such), 2... the training split's characters;
- `--as-sequence` (`as_sequence`): an image (C x H x W) becomes H steps of C*W features, the
  classic "sequential MNIST"; an npz's N x T integers become token ids (0 = padding); N x T
  floats become T steps of one feature; N x T x F floats are sequences already.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunectl.errors import DataError
from tunectl.sources import Dataset, _available_memory, _check, _force_task, _plain, _short, _targets

MAX_STEPS = 100_000  # characters in one text: a genome belongs in windows of it, not in one example
MAX_TOKEN = 2**24  # token ids must stay exact in float32 (npz x is read as float32 first)
PAD, UNKNOWN = 0, 1  # token 0 pads a sequence; token 1 stands for a character unseen in training
TOKEN_KINDS = ("tokens", "chars")


def is_tokens(ds: Dataset) -> bool:
    return ds.sequence in TOKEN_KINDS


def load_text_csv(path: Path, target: str | None, column: str, task: str | None = None) -> Dataset:
    """`csv:PATH --sequence COLUMN`: the column's texts as code points (N x longest, 0-padded), `target` as y."""
    where = f"csv:{path}"
    if path.is_dir():
        raise DataError(f"{where}: is a folder, not a CSV file; give the file's path")
    if not path.is_file():
        raise DataError(f"{where}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                        f"save it as UTF-8") from None
    except csv.Error as e:
        raise DataError(f"{where}: not a readable CSV file ({_short(str(e))}); check the file") from None
    if len(rows) < 2:
        raise DataError(f"{where}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0][1]]
    columns = ", ".join(_plain(h, 40) for h in header[:30]) + (", ..." if len(header) > 30 else "")
    if target is None:
        raise DataError(f"{where}: say which column to predict with --target COLUMN (columns: {columns})")
    for flag, name in (("--target", target), ("--sequence", column)):
        if name not in header:
            raise DataError(f"{where}: no column {_short(name)}; {flag} must be one of: {columns}")
        if header.count(name) > 1:
            raise DataError(f"{where}: {header.count(name)} columns are named {_short(name)}; rename them so "
                            f"that {flag} names one")
    if target == column:
        raise DataError(f"{where}: --target and --sequence both name {_short(target)}; the sequence is what the "
                        f"model reads, the target what it predicts: name two columns")
    t, s = header.index(target), header.index(column)
    texts, labels = [], []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{where}: line {line} has {len(row)} cells but the header has {len(header)}; "
                            f"fix that row (a missing or extra comma?)")
        text = row[s].strip()
        if not text:
            raise DataError(f"{where}: line {line}: the sequence column {_short(column, 40)} is empty; drop that "
                            f"row or fill it")
        if len(text) > MAX_STEPS:
            raise DataError(f"{where}: line {line}: a sequence of {len(text)} characters, more than {MAX_STEPS}; "
                            f"cut it into windows, one example each")
        texts.append(text)
        labels.append(row[t].strip())
    longest = max(map(len, texts))
    need, free = 8 * len(texts) * longest, _available_memory()
    if free is not None and need > free // 2:
        raise DataError(f"{where}: {len(texts)} sequences padded to {longest} characters need {need / 2**30:.1f} GiB, "
                        f"more than half of the {free / 2**30:.1f} GiB free; cut the long ones into windows")
    x = np.zeros((len(texts), longest), dtype=np.int64)
    for i, text in enumerate(texts):
        x[i, :len(text)] = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    y, classes, inferred = _targets(np.array(labels, dtype=object), where)
    ds = Dataset(torch.from_numpy(x), y, inferred, where, classes, sequence="chars")
    if task is not None:
        ds = _force_task(ds, task)
    _check(ds)
    return ds


def rows(images: torch.Tensor) -> torch.Tensor:
    """N x C x H x W images -> N x H x (C * W): H steps, each one row of every channel ("sequential MNIST")."""
    n, c, h, w = images.shape
    return images.permute(0, 2, 1, 3).reshape(n, h, c * w)


def as_sequence(ds: Dataset) -> Dataset:
    """--as-sequence: the data set read as sequences (see the module's docstring for each shape)."""
    x = ds.x
    if ds.sequence:
        return ds  # a text column, or sequences already
    if ds.is_image:
        return dataclasses.replace(ds, x=rows(x).contiguous(), is_image=False, flips_ok=False, sequence="floats")
    if x.ndim == 3:
        return dataclasses.replace(ds, sequence="floats")
    if x.ndim != 2:
        raise DataError(f"{ds.name}: --as-sequence reads images, N x T or N x T x F arrays; this data set has "
                        f"shape {tuple(x.shape)}")
    if not ds.integer:  # N x T floats: T steps of one feature
        return dataclasses.replace(ds, x=x.unsqueeze(2), sequence="floats")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high >= MAX_TOKEN:
        raise DataError(f"{ds.name}: --as-sequence reads N x T integers as token ids, which must be in 0..{MAX_TOKEN - 1} "
                        f"(0 = padding); these run from {low:.0f} to {high:.0f}: renumber them")
    return dataclasses.replace(ds, x=x.to(torch.int64), sequence="tokens", vocab=max(2, int(high) + 1))


def encode_chars(x: torch.Tensor, train: np.ndarray) -> tuple[torch.Tensor, str]:
    """Code points -> tokens with the training rows' characters as the vocabulary (0 pad, 1 unknown).

    Returns the tokens and the vocabulary as a string (token 2 + i is its i-th character)."""
    seen = torch.unique(x[torch.from_numpy(train)])
    seen = seen[seen != PAD]
    pos = torch.searchsorted(seen, x).clamp(max=max(0, len(seen) - 1))
    known = seen[pos] == x if len(seen) else torch.zeros_like(x, dtype=torch.bool)
    tokens = torch.where(x == PAD, PAD, torch.where(known, pos + 2, UNKNOWN))
    return tokens, "".join(map(chr, seen.tolist()))


def record(ds: Dataset, vocab: int, vocabulary: str | None) -> dict[str, Any]:
    """The split manifest's `sequence` entry: what kind of sequences, how many tokens, which characters."""
    out: dict[str, Any] = {"kind": ds.sequence, "steps": int(ds.x.shape[1])}
    if vocab:
        out["vocab"] = vocab
    if vocabulary is not None:
        out["vocabulary"] = vocabulary
    return out
