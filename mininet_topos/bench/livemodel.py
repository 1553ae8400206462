"""bench live-routing's network in simulated time: QuSeC's real core, and what live agents add to
the key-flow simulation, each of which can be switched back to the simulation's way.

The key-flow simulation (``keyflow.simulate``) asks QuSeC for a path for every chunk of demand,
reports exact levels every step and stores seconds of key. On live agents (``liverouting``):

* a source reuses its granted path until ``PATH_REUSE_MARGIN_S`` before it expires (QuSeC's
  ``path_ttl``, 60 s) or until a relay on it fails (the agent's relay engine), so one decision
  carries a pair's demand for up to a minute (``fresh=True``: a path per request instead);
* QuSeC sees each link end's level as its agent last reported it, every ``interval_s``, with the
  agent's own consumption meter (``ConsumptionMeter``);
* a link end keeps ``buffer_s`` of its half of the key stream;
* a request is ``keys`` keys that get all or none; every relay hop takes the keys' bits plus a
  one-time MAC key, and a hop that finds too little key fails the request (what the hops before it
  took is spent);
* a pair of neighbours gets its keys over the direct link while it holds enough, else relayed.

Events run in simulated time; levels refill lazily at each direction's rate. Nothing here is
measured on a live network: it shows what each difference costs, with QuSeC's own decisions.
"""
from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, replace

from kms_agents.relay.crypto import MAC_KEY_BYTES
from kms_agents.relay.engine import PATH_REUSE_MARGIN_S
from kms_agents.relay.links import ConsumptionMeter
from mininet_topos.bench.keyflow import DIRECTION_SHARE, core_for
from quseccontroller import options
from quseccontroller.actions import PathRequest
from quseccontroller.policy import parse
from quseccontroller.state import REPORT_INTERVAL_S, LinkState

KEY_BITS = 256


@dataclass(frozen=True)
class Model:
    keys: int = 8                     # keys of KEY_BITS per request
    pair_bps: float = 4096.0          # each pair's demand (the bound of the scaled network)
    buffer_s: float = 2.0             # seconds of its half of the stream a link end keeps
    interval_s: float = REPORT_INTERVAL_S
    path_ttl_s: float = options.default("path_ttl")
    fresh: bool = False               # a path per request (the key-flow simulation's way)
    mac_bits: int = 8 * MAC_KEY_BYTES  # link key a relay hop takes beyond the keys' bits
    warmup_s: float = 60.0
    window_s: float = 40.0


# What the decomposition runs: the live bench's network, then one difference at a time undone.
VARIANTS = (
    ("as live", {}),
    ("a path per request", {"fresh": True}),
    ("a path per request, reports every 0.25 s", {"fresh": True, "interval_s": 0.25}),
    ("1 key per request (a MAC key's share as for 8)", {"keys": 1, "mac_bits": MAC_KEY_BYTES}),
    ("5 s of key stored", {"buffer_s": 5.0}),
)


def run(topo, pairs, metric: str, model: Model, seed: int) -> dict:
    """One window of ``model`` on the (scaled) topology for ``metric``: delivered/bound, requests."""
    rng = random.Random(seed)
    rate, cap, level, since = {}, {}, {}, {}
    links_between: dict[frozenset, list[str]] = {}
    for lk in topo.links:
        links_between.setdefault(frozenset((lk.a, lk.b)), []).append(lk.id)
        for u in (lk.a, lk.b):
            h = (lk.id, u)
            rate[h] = lk.rate_bps * DIRECTION_SHARE
            cap[h] = rate[h] * model.buffer_s
            level[h], since[h] = cap[h] * rng.random(), 0.0
    meter = ConsumptionMeter()

    def have(h, t: float) -> float:
        level[h] = min(cap[h], level[h] + rate[h] * (t - since[h]))
        since[h] = t
        return level[h]

    core = core_for(topo, parse({"default": {"paths": 1, "metric": metric}}, "<livemodel>"))
    period = model.keys * KEY_BITS / model.pair_bps
    need = model.keys * KEY_BITS
    events = [(rng.random() * model.interval_s, 0, "report", n) for n in sorted(topo.nodes)]
    events += [(i / len(pairs) * period, 1, "request", p) for i, p in enumerate(pairs)]
    events.append((1.0, 2, "expire", None))
    heapq.heapify(events)
    plans: dict[tuple, tuple[str, float, list[tuple[str, str]]]] = {}   # pair -> path id, expiry, hops
    end = model.warmup_s + model.window_s
    out = {"bits": 0, "ok": 0, "failed": 0, "refused": 0, "grants": 0}
    while events:
        t, order, kind, what = heapq.heappop(events)
        if t >= end:
            break
        if kind == "report":
            states = []
            for lk in topo.links:
                if what in (lk.a, lk.b):
                    h = (lk.id, what)
                    bits = int(have(h, t))
                    used = meter.update(f"{lk.id}@{what}", t, bits, lk.rate_bps, int(cap[h]))
                    states.append(LinkState(lk.id, lk.b if what == lk.a else lk.a, lk.rate_bps, bits, used))
            core.agent_report(what, states, t)
            heapq.heappush(events, (t + model.interval_s, order, kind, what))
            continue
        if kind == "expire":
            core.expire(t)
            heapq.heappush(events, (t + 1.0, order, kind, what))
            continue
        heapq.heappush(events, (t + period, order, kind, what))
        measured = t >= model.warmup_s
        src, dst = what
        direct = links_between.get(frozenset(what), [])
        if direct:
            best = max(direct, key=lambda lid: have((lid, src), t))
            if have((best, src), t) >= need:
                level[(best, src)] -= need
                if measured:
                    out["ok"] += 1
                    out["bits"] += need
                continue
        plan = plans.get(what)
        if plan is not None and (model.fresh or plan[1] - PATH_REUSE_MARGIN_S <= t):
            del plans[what]
            core.release_path(plan[0], t)   # as the source does with a plan it stops reusing
            plan = None
        if plan is None:
            d, _ = core.request_path(PathRequest(src, dst, key_size_bits=KEY_BITS, key_count=model.keys), t)
            if not d.granted:
                if measured:
                    out["failed"] += 1
                    out["refused"] += 1
                continue
            out["grants"] += measured
            ap = core.paths[d.path_ids[0]]
            plan = plans[what] = (ap.path_id, d.expires_at, list(zip(ap.nodes, ap.links)))
        for u, lid in plan[2]:
            if have((lid, u), t) < need + model.mac_bits:
                plans.pop(what, None)   # the source asks afresh next time (the grant lapses)
                if measured:
                    out["failed"] += 1
                break
            level[(lid, u)] -= need + model.mac_bits
        else:
            if measured:
                out["ok"] += 1
                out["bits"] += need
    out["ratio"] = out["bits"] / (model.pair_bps * len(pairs) * model.window_s)
    return out


def decomposition(topo, pairs, seeds: int, base: Model = Model()) -> list[dict]:
    """Delivered/bound (mean, min, max over ``seeds``) for hops and key_aware in each variant."""
    rows = []
    for name, change in VARIANTS:
        model = replace(base, **change)
        row: dict = {"model": name}
        for metric in ("hops", "key_aware"):
            got = [run(topo, pairs, metric, model, s)["ratio"] for s in range(seeds)]
            row[f"{metric}_mean"] = round(sum(got) / len(got), 3)
            row[f"{metric}_range"] = f"{min(got):.3f}..{max(got):.3f}"
        rows.append(row)
    return rows
