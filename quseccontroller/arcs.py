"""Array view of the QKD graph (numpy) and the searches that run on it (scipy.sparse.csgraph)."""
from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from quseccontroller.pathcost import Constraints, hop_cost

if TYPE_CHECKING:
    from quseccontroller.state import NetworkState

Found = tuple[list[str], list[str], float]   # nodes, link id per hop, cost


class ArcIndex:
    """Every QKD link as two directed arcs (one per initiating end), sorted by (tail, head, link
    id) over nodes sorted by id, so searches do not depend on the order events arrived in.
    Records in NetworkState stay the truth; this is a cache refreshed from ``dirty_links``."""

    def __init__(self) -> None:
        self.version = -1
        self._weights: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def refresh(self, st: "NetworkState") -> None:
        if st.topo_version != self.version:
            self._build(st)
            self._weights.clear()
        elif st.dirty_links:
            for lid in st.dirty_links:
                self._load(st, lid)
            self._weights.clear()
        st.dirty_links.clear()
        if st.nodes_dirty or self.version != st.topo_version:
            self._load_nodes(st)
        self.version = st.topo_version

    def _build(self, st: "NetworkState") -> None:
        self.nodes = sorted(st.qkd)
        self.idx = {n: i for i, n in enumerate(self.nodes)}
        idx = self.idx
        arcs = sorted((idx[u], idx[v], r.link_id, u) for r in st.links.values()
                      for u, v in ((r.a, r.b), (r.b, r.a)))
        self.tail = np.array([a[0] for a in arcs], dtype=np.int64)
        self.head = np.array([a[1] for a in arcs], dtype=np.int64)
        self.lids = [a[2] for a in arcs]
        self.pos = {(a[2], a[3]): i for i, a in enumerate(arcs)}
        m = len(arcs)
        self.stored = np.zeros(m)
        self.reserved = np.zeros(m)
        self.cons = np.zeros(m)
        self.skr = np.zeros(m)
        self.latency = np.ones(m)
        self.off = np.ones(m, dtype=bool)
        pair = self.tail * len(self.nodes) + self.head
        self.parallel = bool(m and np.any(pair[1:] == pair[:-1]))
        self.by_pair: dict[tuple[int, int], list[int]] = {}
        for i, a in enumerate(arcs):
            self.by_pair.setdefault((a[0], a[1]), []).append(i)
        for lid in st.links:
            self._load(st, lid)
        self._exclude_cache: dict[tuple, np.ndarray] = {}

    def _load(self, st: "NetworkState", lid: str) -> None:
        rec = st.links[lid]
        for u in (rec.a, rec.b):
            i = self.pos.get((lid, u))
            if i is None:
                continue
            self.stored[i] = rec.stored_from(u)
            self.reserved[i] = st.reserved.get((lid, u), 0)
            self.cons[i] = rec.consumption.get(u, 0.0)
            self.skr[i] = rec.skr_bps
            self.latency[i] = rec.latency_ms
            self.off[i] = rec.off

    def _load_nodes(self, st: "NetworkState") -> None:
        n = len(self.nodes)
        self.trust = np.array([st.trust(x) for x in self.nodes], dtype=np.int64) if n else np.zeros(0, int)
        require_online = st.require_online
        self.online = np.array([(not require_online) or x in st.online for x in self.nodes], dtype=bool)
        st.nodes_dirty = False

    def node_ok(self, c: Constraints) -> np.ndarray:
        ok = self.online.copy()
        if c.check_trust and c.min_trust:
            ok &= self.trust >= c.min_trust
        if c.check_trust and c.exclude:
            ex = self._exclude_cache.get(c.exclude)
            if ex is None:
                ex = np.array([any(fnmatch.fnmatchcase(x, g) for g in c.exclude) for x in self.nodes],
                              dtype=bool)
                self._exclude_cache[c.exclude] = ex
            ok &= ~ex
        return ok

    def arc_weights(self, c: Constraints) -> tuple[np.ndarray, np.ndarray]:
        """(usable mask, cost) of every arc, from link state and key constraints only (read-only
        arrays, kept until the links change: a search, its hop-bounded retry and the refusal
        checks of one request share them)."""
        key = (c.need_bits, c.check_key, c.metric)
        got = self._weights.get(key)
        if got is None:
            avail = self.stored - self.reserved
            usable = ~self.off
            if c.check_key:
                usable &= avail >= c.need_bits
            w = np.asarray(hop_cost(self.skr, self.cons, avail, c.need_bits, c.metric, self.latency),
                           dtype=float)
            for a in (usable, w):
                a.setflags(write=False)
            if len(self._weights) >= 8:
                self._weights.clear()
            got = self._weights[key] = (usable, w)
        return got

    def best_arc(self, p: int, q: int, mask: np.ndarray, w: np.ndarray) -> int | None:
        """The cheapest arc p -> q allowed by ``mask`` (ties: the smaller link id), or None."""
        return min((i for i in self.by_pair.get((p, q), ()) if mask[i]),
                   key=lambda i: (w[i], self.lids[i]), default=None)

    def _cheapest_per_pair(self, sel: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Of parallel arcs (several links between one node pair), keep the cheapest (ties: the
        smaller link id, which sorts first)."""
        if not self.parallel or not sel.size:
            return sel
        order = np.lexsort((sel, w[sel], self.tail[sel] * len(self.nodes) + self.head[sel]))
        sel = sel[order]
        pair = self.tail[sel] * len(self.nodes) + self.head[sel]
        first = np.ones(sel.size, dtype=bool)
        first[1:] = pair[1:] != pair[:-1]
        return np.sort(sel[first])

    def search(self, st: "NetworkState", src: str, dst: str, c: Constraints,
               banned: set[str] = frozenset(), no_direct: bool = False) -> Found | None:
        """Least-cost path src -> dst whose relays pass the node constraints (Dijkstra in C)."""
        self.refresh(st)
        s, t = self.idx[src], self.idx[dst]
        ok = self.node_ok(c)
        for b in banned:
            ok[self.idx[b]] = False
        ok[s] = ok[t] = True
        usable, w = self.arc_weights(c)
        mask = usable & ok[self.tail] & ok[self.head]
        if no_direct:
            mask &= ~((self.tail == s) & (self.head == t))
        sel = self._cheapest_per_pair(np.flatnonzero(mask), w)
        n = len(self.nodes)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.tail[sel], minlength=n), out=indptr[1:])
        g = csr_matrix((w[sel], self.head[sel], indptr), shape=(n, n))
        dist, pred = dijkstra(g, directed=True, indices=s, return_predecessors=True)
        if not np.isfinite(dist[t]):
            return None
        path = [t]
        while path[-1] != s:
            path.append(int(pred[path[-1]]))
        path.reverse()
        links, cost = [], 0.0
        for p, q in zip(path, path[1:]):
            arc = self.best_arc(p, q, mask, w)
            links.append(self.lids[arc])
            cost += float(w[arc])
        return [self.nodes[i] for i in path], links, cost

    def disjoint(self, st: "NetworkState", src: str, dst: str, c: Constraints, k: int) -> list[Found]:
        """Up to k node-disjoint paths of least total cost: successive shortest paths with
        potentials on the node-split graph (Suurballe/Bhandari), every search in C."""
        self.refresh(st)
        n = len(self.nodes)
        s, t = self.idx[src], self.idx[dst]
        ok = self.node_ok(c)
        ok[s] = ok[t] = True
        usable, w = self.arc_weights(c)
        mask = usable & ok[self.tail] & ok[self.head] & (self.head != s) & (self.tail != t)
        # One arc per node pair: parallel links share both ends, so they are one share's worth.
        sel = self._cheapest_per_pair(np.flatnonzero(mask), w)
        # Split graph: node v is v (in) and n + v (out); link arcs out_u -> in_v; internal
        # in_v -> out_v for every allowed relay. Start at out_s, goal in_t.
        relays = np.flatnonzero(ok & (np.arange(n) != s) & (np.arange(n) != t))
        at = np.concatenate([self.tail[sel] + n, relays])
        ah = np.concatenate([self.head[sel], relays + n])
        ac = np.concatenate([w[sel], np.zeros(relays.size)])
        src_arc = np.concatenate([sel, -np.ones(relays.size, dtype=np.int64)])
        used = np.zeros(at.size, dtype=bool)
        pot = np.zeros(2 * n)
        start, goal = s + n, t
        found = 0
        for _ in range(k):
            fwd = ~used
            rt = np.concatenate([at[fwd], ah[used]])
            rh = np.concatenate([ah[fwd], at[used]])
            rc = np.concatenate([ac[fwd], -ac[used]])
            rid = np.concatenate([np.flatnonzero(fwd), -1 - np.flatnonzero(used)])
            rc = np.maximum(rc + pot[rt] - pot[rh], 0.0)
            keep = np.isfinite(rc)
            rt, rh, rc, rid = rt[keep], rh[keep], rc[keep], rid[keep]
            order = np.lexsort((rh, rt))
            rt, rh, rc, rid = rt[order], rh[order], rc[order], rid[order]
            indptr = np.zeros(2 * n + 1, dtype=np.int64)
            np.cumsum(np.bincount(rt, minlength=2 * n), out=indptr[1:])
            g = csr_matrix((rc, rh, indptr), shape=(2 * n, 2 * n))
            dist, pred = dijkstra(g, directed=True, indices=start, return_predecessors=True)
            if not np.isfinite(dist[goal]):
                break
            pot += np.minimum(dist, dist[goal])
            y = goal
            while y != start:
                x = int(pred[y])
                lo, hi = int(indptr[x]), int(indptr[x + 1])
                a = int(rid[lo + rh[lo:hi].tolist().index(y)])
                if a >= 0:
                    used[a] = True
                else:
                    used[-1 - a] = False
                y = x
            found += 1
        # Decompose the flow into paths: every node but out_s has at most one used arc out.
        succ = {int(at[a]): int(a) for a in np.flatnonzero(used) if int(at[a]) != start}
        firsts = [int(a) for a in np.flatnonzero(used) if int(at[a]) == start]
        paths: list[Found] = []
        for a in firsts:
            nodes, links, cost = [s], [], 0.0
            while True:
                v = int(ah[a])                    # an in-node: the next node on the path
                nodes.append(v)
                links.append(self.lids[int(src_arc[a])])
                cost += float(ac[a])
                if v == t:
                    break
                a = succ[v + n]                   # (in_v -> out_v is internal) leave from out_v
            paths.append(([self.nodes[i] for i in nodes], links, cost))
        return sorted(paths, key=lambda f: (f[2], f[0]))
