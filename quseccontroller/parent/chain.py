"""The parent's decision: which domains, and which crossings between them, carry a key.

The same key-aware idea as a domain's path search, one level up. The graph has a vertex per
border node of every domain with a fresh export; its edges are what domains export (the reach
between two of their borders: only across domains that offer transit), the crossings both sides
declare alike (an interworking site, ETSI GS QKD 020 inside one protected site, or a PQC link),
the source domain's reach from the source node to each of its borders (sent with the request:
the parent never learns the source node) and the destination domain's reach from each border to
the SAE. A reach costs its hop count times the key-aware hop cost of its rate and stored key
(``quseccontroller.pathcost.hop_cost``); a crossing costs one hop. A reach that cannot serve the
request now (stored key plus rate over the cost horizon below the bits asked) is left out.

Pure: no sockets. ``quseccontroller.parent.server`` feeds it.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from quseccontroller.abstract import Border, DomainExport, Reach
from quseccontroller.pathcost import HORIZON_S, hop_cost

CROSSING_COST = 1.0
SECURITY_QKD = "qkd"   # every hop QKD key (interworking sites pass keys inside protected sites)
SECURITY_PQC = "pqc"   # at least one hop over a post-quantum-only link


class NoChain(Exception):
    """No domain chain; ``reason`` is a fixed code (the gRPC details carry the message)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ChainRequest:
    src_domain: str
    dst_sae: str
    need_bits: int = 256
    src_reach: dict[str, Reach] = field(default_factory=dict)   # source node -> each border
    allow_pqc: bool = True          # the source's policy accepts the post-quantum level
    exclude: tuple[str, ...] = ()   # crossings (site / PQC link ids) or domains to avoid


@dataclass(frozen=True)
class Segment:
    """The part of the chain inside one domain, which that domain's QuSeC authorises."""
    domain: str
    entry: str    # "" in the source domain: the source node (the parent does not know it)
    exit: str     # "" in the destination domain: the SAE's node (likewise)


@dataclass(frozen=True)
class Crossing:
    id: str
    kind: str
    from_domain: str
    from_node: str
    to_domain: str
    to_node: str


@dataclass(frozen=True)
class Chain:
    dst_domain: str
    segments: tuple[Segment, ...]
    crossings: tuple[Crossing, ...]
    security: str
    cost: float


def reach_cost(r: Reach, need_bits: int) -> float:
    if r.hops == 0:   # the node is the border itself (a key starting at an exit KME): nothing to cross
        return 0.0
    return max(r.hops, 1) * float(hop_cost(r.rate_bps, 0.0, r.stored_bits, need_bits, "key_aware", 0.0))


def crossings(exports: dict[str, DomainExport]) -> list[tuple[str, Border, str, Border]]:
    """Crossings both ends declare alike and report up: (domain, border, peer domain, its border), once."""
    by_key: dict[tuple, Border] = {}
    for dom, ex in exports.items():
        for b in ex.borders:
            by_key[(dom, b.node, b.crossing, b.kind, b.peer_domain, b.peer_node)] = b
    out = []
    for (dom, node, cid, kind, pdom, pnode), b in sorted(by_key.items()):
        other = by_key.get((pdom, pnode, cid, kind, dom, node))
        if other is not None and (dom, node) < (pdom, pnode) and b.up and other.up:
            out.append((dom, b, pdom, other))
    return out


def choose(exports: dict[str, DomainExport], req: ChainRequest) -> Chain:
    """The least-cost chain for ``req`` over the fresh ``exports`` (domain -> its export).

    Security level first, then cost: a chain of QKD-only crossings when one exists; over a PQC
    link (one that joins the source and destination domains directly) only when none does and
    the request allows it.
    """
    try:
        return _least_cost(exports, req, pqc=False)
    except NoChain as exc:
        if exc.reason != "no_route" or not req.allow_pqc:
            raise
    return _least_cost(exports, req, pqc=True)


def _least_cost(exports: dict[str, DomainExport], req: ChainRequest, *, pqc: bool) -> Chain:
    if req.src_domain not in exports:
        raise NoChain("domain_down", f"no fresh export from the source domain {req.src_domain!r}")
    homes = [d for d, ex in exports.items() if req.dst_sae in ex.saes]
    if not homes:
        raise NoChain("unknown_sae", f"no domain exports SAE {req.dst_sae!r} (or its domain is down)")
    if len(homes) > 1:
        raise NoChain("ambiguous_sae", f"SAE {req.dst_sae!r} is exported by {', '.join(sorted(homes))}")
    dst = homes[0]
    if dst == req.src_domain:
        raise NoChain("same_domain", f"SAE {req.dst_sae!r} is in the source domain {dst!r}")
    if dst in req.exclude:
        raise NoChain("excluded", f"the destination domain {dst!r} is excluded")
    need = req.need_bits
    src, sink = ("", "source"), ("", "sae")
    adj: dict[tuple[str, str], list[tuple[tuple[str, str], float, Crossing | None]]] = {}

    def edge(u, v, cost, crossing=None) -> None:
        adj.setdefault(u, []).append((v, cost, crossing))

    for node, r in req.src_reach.items():
        if r.serves(need, HORIZON_S):
            edge(src, (req.src_domain, node), reach_cost(r, need))
    for node, r in exports[dst].saes[req.dst_sae].items():
        if r.serves(need, HORIZON_S):
            edge((dst, node), sink, reach_cost(r, need))
    for dom, ex in exports.items():
        if dom in (req.src_domain, dst) or not ex.transit or dom in req.exclude:
            continue
        for (a, b), r in ex.links.items():
            if r.serves(need, HORIZON_S):
                edge((dom, a), (dom, b), reach_cost(r, need))
                edge((dom, b), (dom, a), reach_cost(r, need))
    for dx, x, dy, y in crossings(exports):
        if x.crossing in req.exclude or {dx, dy} & set(req.exclude):
            continue
        # a PQC link only where it joins the source domain to the destination's directly: the
        # source's QuSeC authorises the post-quantum level by its policy, and the slave's node is
        # told the level by the link's far end (a key already in flight goes on at the qkd level)
        if x.kind == "pqc" and (not pqc or {dx, dy} != {req.src_domain, dst}):
            continue
        edge((dx, x.node), (dy, y.node), CROSSING_COST, Crossing(x.crossing, x.kind, dx, x.node, dy, y.node))
        edge((dy, y.node), (dx, x.node), CROSSING_COST, Crossing(x.crossing, x.kind, dy, y.node, dx, x.node))

    best: dict[tuple[str, str], float] = {src: 0.0}
    back: dict[tuple[str, str], tuple[tuple[str, str], Crossing | None]] = {}
    heap = [(0.0, src)]
    done: set[tuple[str, str]] = set()
    while heap:
        cost, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        if u == sink:
            break
        for v, c, crossing in adj.get(u, ()):
            if v not in done and cost + c < best.get(v, float("inf")):
                best[v] = cost + c
                back[v] = (u, crossing)
                heapq.heappush(heap, (cost + c, v))
    if sink not in done:
        raise NoChain("no_route", f"no chain of domains from {req.src_domain!r} to {dst!r} can carry "
                                  f"{need} bits now")
    steps: list[tuple[tuple[str, str], Crossing | None]] = []
    v = sink
    while v != src:
        u, crossing = back[v]
        steps.append((v, crossing))
        v = u
    steps.reverse()
    used = tuple(c for _v, c in steps if c is not None)
    return Chain(dst_domain=dst, segments=_segments(req.src_domain, dst, used), crossings=used,
                 security=SECURITY_PQC if any(c.kind == "pqc" for c in used) else SECURITY_QKD,
                 cost=best[sink])


def _segments(src: str, dst: str, used: tuple[Crossing, ...]) -> tuple[Segment, ...]:
    """One segment per domain the chain passes: from where it enters to where it leaves."""
    out = []
    entry, dom = "", src
    for c in used:
        out.append(Segment(dom, entry, c.from_node))
        entry, dom = c.to_node, c.to_domain
    out.append(Segment(dom, entry, ""))
    assert dom == dst, (dom, dst)
    return tuple(out)
