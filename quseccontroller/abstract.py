"""What a domain tells its parent controller: an abstract topology of its border nodes.

Shaped like the orchestrator's view of ETSI GS QKD 018 (SD-QKD nodes and the service links
between them): a domain exports its **border nodes** (the KMEs of its interworking sites and the
ends of its post-quantum links, each with the crossing it leads to), between each pair of them
**what the domain can carry** (:class:`Reach`: the key rate, the key stored now along the best
path, its hop count), and for each SAE it offers to other domains the reach from every border
node to that SAE's node. Never a node inside the domain, a link, or a key level per link: the
parent (``quseccontroller.parent``) chooses domain chains from this alone.

Pure: built from the core's :class:`~quseccontroller.state.NetworkState`, no sockets.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from itertools import combinations

import networkx as nx

from quseccontroller.state import NetworkState

KINDS = ("etsi020", "pqc")   # an interworking site (ETSI GS QKD 020 in one protected site), a PQC link


@dataclass(frozen=True)
class Border:
    """A node of this domain where keys leave for another domain."""
    node: str
    crossing: str          # the interworking site id or PQC link id
    kind: str              # one of KINDS
    peer_domain: str
    peer_node: str
    up: bool = True        # the node's agent is registered and online


@dataclass(frozen=True)
class Reach:
    """What a domain can carry between two of its nodes."""
    rate_bps: float        # sustained: the maximum flow of the usable links' secret key rates
    stored_bits: int       # now: the key stored along the path with the most (its bottleneck)
    hops: int              # that path's hop count

    def serves(self, need_bits: int, horizon_s: float) -> bool:
        """Whether ``need_bits`` fit in the stored key plus what the rate adds over ``horizon_s``."""
        return self.stored_bits + self.rate_bps * horizon_s >= need_bits


@dataclass(frozen=True)
class DomainExport:
    domain: str
    seq: int                                     # increases with every export of this domain
    borders: tuple[Border, ...] = ()
    links: dict[tuple[str, str], Reach] = field(default_factory=dict)   # (a, b), a < b, borders
    saes: dict[str, dict[str, Reach]] = field(default_factory=dict)     # SAE -> border -> reach
    transit: bool = True                         # carries other domains' keys across itself

    def link(self, a: str, b: str) -> Reach | None:
        return self.links.get((a, b) if a < b else (b, a))


def usable_graph(st: NetworkState, min_trust: int = 0) -> nx.Graph:
    """Online nodes (trust >= ``min_trust``) joined by their usable QKD links.

    Edge attributes: ``rate`` (summed secret key rate of the pair's usable links) and ``stored``
    (node -> the most key one of them holds for hops that node starts).
    """
    g = nx.Graph()
    up = {n for n in st.qkd.nodes if st.node_up(n) and st.trust(n) >= min_trust}
    g.add_nodes_from(up)
    for u, v, data in st.qkd.edges(data=True):
        if u not in up or v not in up:
            continue
        recs = [st.links[lid] for lid in data.get("links", ()) if lid in st.links and not st.links[lid].off]
        if recs:
            g.add_edge(u, v, rate=sum(r.skr_bps for r in recs),
                       stored={n: max(r.stored_from(n) for r in recs) for n in (u, v)})
    return g


def widest(g: nx.Graph, src: str, dst: str) -> tuple[int, int] | None:
    """(bottleneck stored key, hops) of the path from ``src`` with the most key; None: no path.

    Ties on key go to fewer hops. Key is directional: a hop u->v uses what u holds.
    """
    if src not in g or dst not in g:
        return None
    inf = 1 << 62
    best = {src: (inf, 0)}
    heap = [(-inf, 0, src)]
    done: set[str] = set()
    while heap:
        neg_width, hops, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        if u == dst:
            return (-neg_width, hops)
        for v, data in g[u].items():
            if v in done:
                continue
            cand = (min(-neg_width, data["stored"][u]), hops + 1)
            old = best.get(v)
            if old is None or (cand[0], -cand[1]) > (old[0], -old[1]):
                best[v] = cand
                heapq.heappush(heap, (-cand[0], cand[1], v))
    return None


def reach(g: nx.Graph, a: str, b: str) -> Reach | None:
    """What the domain (its usable graph ``g``) carries from ``a`` to ``b``; None: nothing."""
    path = widest(g, a, b)
    if path is None:
        return None
    if a == b:
        return Reach(rate_bps=float("inf"), stored_bits=path[0], hops=0)
    rate = nx.maximum_flow_value(g, a, b, capacity="rate")
    return Reach(rate_bps=float(rate), stored_bits=int(path[0]), hops=path[1])


def export(st: NetworkState, domain: str, borders: list[Border], *, seq: int,
           saes: list[str] | None = None, transit: bool = True, min_trust: int = 0) -> DomainExport:
    """The export of ``domain``: its ``borders`` (``up`` from the agents), the reach between
    every pair of usable borders, and from every usable border to each SAE in ``saes``
    (default: every SAE QuSeC's inventory places in the domain)."""
    g = usable_graph(st, min_trust)
    marked = tuple(Border(b.node, b.crossing, b.kind, b.peer_domain, b.peer_node, up=b.node in g)
                   for b in borders)
    live = sorted({b.node for b in marked if b.up})
    links = {}
    for a, b in combinations(live, 2):
        r = reach(g, a, b)
        if r is not None:
            links[(a, b)] = r
    out: dict[str, dict[str, Reach]] = {}
    for sae in (saes if saes is not None else sorted(st.sae_home)):
        home = st.sae_home.get(sae)
        if home is None:
            continue
        per = {b: r for b in live if (r := reach(g, b, home)) is not None}
        if per:
            out[sae] = per
    return DomainExport(domain=domain, seq=seq, borders=marked, links=links, saes=out, transit=transit)
