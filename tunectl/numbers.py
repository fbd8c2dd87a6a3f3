"""JSON-safe numbers: NaN and infinity (which JSON lacks) become null; every other number keeps full precision.

Rounding is for reading: only the tables round. What a study, a run folder or `--json` holds
is the float as computed.
"""

from __future__ import annotations

import math
from typing import Any


def clean(v: Any) -> Any:
    """`v` with every non-finite float, however deeply nested in dicts and lists, replaced by None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v
