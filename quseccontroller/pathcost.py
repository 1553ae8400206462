"""What a relay path must satisfy (Constraints) and what one hop costs (one formula, scalars or arrays)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Key-aware hop cost (ETSI GS QKD 015: "a weighted graph built using the key availability, key
# generation rates and consumption for each link"). A hop costs 1 plus a scarcity term
# ALPHA * (HORIZON_S * skr) / headroom, where headroom = the key left at the hop's start after this
# request plus what the link nets (generation - consumption) over HORIZON_S (about one report
# interval). A link with ample key costs about 1 (a hop), one about to run dry far more, so demand
# spreads before links empty. ALPHA and HORIZON_S were chosen with `qkdnet bench routing`:
# (32, 0.5 s) lifts the worst mesh seeds from about 0.91 to 0.97+ of the flow bound and lowers the
# key burnt per bit, against (1, 10 s).
ALPHA = 32.0
HORIZON_S = 0.5
# A relay hop a->b draws on a's half of the link's key stream (the vKMS KeySource splits it by
# direction; an end's consumption is what it takes of its half): the key rate a hop's headroom
# counts is this share of the link's.
DIRECTION_SHARE = 0.5
# Under metric "latency" a hop never costs less than this, so zero-latency hops still count and
# ties between equally fast paths go to the one with fewer hops.
MIN_LATENCY_MS = 1e-6


@dataclass(frozen=True)
class Constraints:
    """What a path must satisfy (from the matched policy rule and the request)."""
    need_bits: int = 256
    min_trust: int = 0
    exclude: tuple[str, ...] = ()
    max_hops: int = 0
    metric: str = "key_aware"
    check_key: bool = True
    check_trust: bool = True


def hop_cost(skr, cons, avail, need, metric: str, latency_ms, *, horizon_s: float = HORIZON_S,
             alpha: float = ALPHA):
    """Cost of one hop under ``metric``, elementwise: every argument but ``metric`` may be a
    number or an array (the path search passes one entry per arc). ``skr`` is the link's key
    rate, ``cons`` what the hop's initiating end consumes of its half, ``avail`` the
    (reservation-adjusted) key at the hop's start, ``need`` the request's bits."""
    if metric == "hops":
        return np.ones_like(avail, dtype=float)
    if metric == "latency":
        return np.maximum(latency_ms, MIN_LATENCY_MS)
    rate = DIRECTION_SHARE * skr   # what this direction makes
    ref = np.where(skr > 0, horizon_s * rate, np.maximum(avail, 1.0))
    headroom = avail - need + horizon_s * np.maximum(rate - cons, 0.0)
    return 1.0 + alpha * ref / np.maximum(np.maximum(headroom, ref * 1e-3), 1.0)
