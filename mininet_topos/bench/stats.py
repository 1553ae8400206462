"""The one percentile every benchmark reports with, so figures of different benches compare."""
from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by linear interpolation between closest ranks (numpy's
    default method; p50 is the median); NaN for no values."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * min(max(p, 0.0), 100.0) / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
