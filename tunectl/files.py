"""Writing files whole: a temporary file and a rename, new folders that appear at once, locks between processes.

A kill or a full disk never leaves half a file (or half a run folder) that a later command
would trust, and two processes never write over each other.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tunectl.errors import ConfigError

def check_new_folder(out: Path, force: bool = False, option: str = "--out") -> None:
    """Refuse, before any work, an output folder that would overwrite something."""
    out = Path(out)
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{option} {out}: {parent} is a file, not a folder; give a folder path")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out}: is a file; give a new folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ConfigError(f"{option} {out}: already holds files ({shown}); give a new folder, or add --force to "
                          f"replace it")


class NewFolder:
    """A run folder written whole or not at all.

    Files are written into a hidden sibling folder, which is renamed into place at the end
    (one atomic step): a kill or a full disk leaves no half-written run, only the hidden
    folder, which is removed on any error. If another process made `out` meanwhile, the
    run goes to `out-2` (and so on) rather than over it; `force` replaces `out` instead.
    """

    def __init__(self, out: Path, force: bool = False, fallback: bool = True):
        import os

        self.out, self.force, self.fallback = Path(out), force, fallback
        self.final = self.out
        self.path = self.out.parent / f".{self.out.name}.{os.getpid()}.partial"

    def __enter__(self) -> "NewFolder":
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        return self

    def __exit__(self, kind, value, tb) -> None:
        import errno
        import os
        import shutil

        if kind is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        try:
            if self.out.is_dir() and self.force and any(self.out.iterdir()):
                old = self.out.parent / f".{self.out.name}.{os.getpid()}.old"
                self.out.rename(old)
                self.path.rename(self.out)
                shutil.rmtree(old, ignore_errors=True)
                return
            n = 1
            while True:
                try:
                    self.path.rename(self.final)  # onto a missing or empty folder only
                    return
                except OSError as e:
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                        raise
                    if not self.fallback:
                        raise ConfigError(f"--out {self.out}: another process wrote there meanwhile; nothing was "
                                          f"replaced; give a new folder") from None
                    n += 1
                    self.final = self.out.with_name(f"{self.out.name}-{n}")
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes on this machine (flock on `path`, made if missing)."""
    import fcntl
    import os

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, as write_text (a figure, a PNG)."""
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two processes never share a temporary file
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:  # a full disk (or Ctrl-C) mid-write: no half file left behind
        tmp.unlink(missing_ok=True)
        raise


def write_new(path: Path, text: str, force: bool = False, option: str = "--out") -> None:
    """Write a new file whole: a temporary file, then a hard link into place, which fails if another
    process made `path` meanwhile (nothing is replaced); `force` renames over it instead. A kill
    mid-write leaves at most the hidden temporary file, never half of `path`."""
    import errno
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        if force:
            tmp.replace(path)
            return
        try:
            try:
                os.link(tmp, path)
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # no hard links here: claim, then rename
                tmp.replace(path)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
            raise ConfigError(f"{option} {path}: another process wrote it meanwhile; nothing was replaced; give a "
                              f"new file, or add --force to replace it") from None
    finally:
        tmp.unlink(missing_ok=True)
