"""A process and all its descendants, read from /proc: what bench/parallel.py and bench/data_scale.py sample.

Linux only (the benchmarks that import it measure /proc's numbers)."""

from __future__ import annotations

import os


def tree(root: int) -> list[int]:
    """root and every descendant (a fork server's workers are its grandchildren), from /proc/*/stat's parent ids."""
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        out += frontier
    return out
