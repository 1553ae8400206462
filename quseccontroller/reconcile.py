"""Flow reconciliation: what each switch should hold (base flows + relay overlay) against what it was sent."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Mapping

from quseccontroller import flows, ofmsgs
from quseccontroller.actions import FlowMods
from quseccontroller.grants import ActivePath
from quseccontroller.ofmsgs import FlowSpec
from quseccontroller.state import NetworkState

Table = dict[tuple, FlowSpec]   # flow key -> flow


class _Everywhere:
    """A base piece that puts the same flows on every switch (a node's relay drop)."""
    __slots__ = ("flows",)

    def __init__(self, flows: tuple[FlowSpec, ...]) -> None:
        self.flows = flows

    def get(self, dpid: int, default: tuple = ()) -> tuple[FlowSpec, ...]:
        return self.flows


class _Hashed:
    """A large tuple in a piece's name, hashed once (a name is looked up at every event)."""
    __slots__ = ("value", "_hash")

    def __init__(self, value: tuple) -> None:
        self.value = value
        self._hash = hash(value)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Hashed) and self._hash == other._hash and self.value == other.value


Pieces = dict[tuple, "Mapping[int, tuple[FlowSpec, ...]] | _Everywhere"]   # piece key -> flows by switch


class FlowReconciler:
    """The flows installed on every connected switch, and the caches that keep an event from
    replanning (or comparing) flows whose inputs did not change.

    The base flows are made of *pieces*, each named by everything its flows depend on: one per
    switch (its ARP filter, table-miss and flooding: the switch, its links and learned hosts),
    one per host (its routes on every switch: the host's address and attachment, the links) and
    one per online node's relay drop (the same flow on every switch). When the network changes,
    only the pieces whose names changed are compared on each switch: a host learned or a node
    registering costs its own flows, not a walk over every switch's table (at 150 switches and
    300 hosts that table is 114,000 flows, and bring-up sees several hundred such events)."""

    def __init__(self) -> None:
        self.installed: dict[int, Table] = {}    # dpid -> what the switch was sent
        self._pieces: tuple = (None, {})          # (base stamp, Pieces) the synced switches hold
        self._route_cache: tuple = (None, None, None)   # (links version, routes, spanning tree)
        self._inputs: tuple = (None, {})          # (links version, per-switch inputs)
        self._trees: tuple = (None, {})           # (links version, route_ports by root switch)
        self._synced: dict[int, Table] = {}      # dpid -> relay flows last sent; base = _pieces
        self._by_cookie: dict[int, ActivePath] = {}

    # -- switches ----------------------------------------------------------------------------
    def switch_up(self, dpid: int) -> None:
        """A switch (re)connected: it holds nothing of ours (the shim deletes our flows first)."""
        self.installed[dpid] = {}
        self._synced.pop(dpid, None)

    def switch_down(self, dpid: int) -> None:
        self.installed.pop(dpid, None)
        self._synced.pop(dpid, None)

    def flow_count(self) -> int:
        return sum(len(f) for f in self.installed.values())

    # -- reconciliation ----------------------------------------------------------------------
    def reconcile(self, st: NetworkState, paths: Mapping[str, ActivePath], now: float) -> list[FlowMods]:
        """FlowMods turning what each switch has into what it should have.

        A switch reconciled before is sent only the changes: the base pieces that changed since
        and its relay flows if they did; switches where neither changed are skipped. A switch
        seen for the first time gets its whole table."""
        if not self.installed:   # no switches (local loopback network): nothing to plan
            return []
        self._by_cookie = {ap.cookie: ap for ap in paths.values()}
        old = self._pieces[1]
        pieces = self._base_pieces(st)
        before_by = self._changes(old, pieces) if pieces is not old else {}
        after_by = self._changes(pieces, old) if pieces is not old else {}
        over = self._relay_overlay(st, paths, now)
        acts: list[FlowMods] = []
        for dpid in sorted(self.installed):
            mine = over.get(dpid, {})
            sent = self._synced.get(dpid)
            if sent is None:
                whole: Table = {}
                for piece in pieces.values():
                    for f in piece.get(dpid, ()):
                        whole[f.key] = f
                whole.update(mine)
                msgs = self._diff(dpid, self.installed[dpid], whole, now, replace_all=True)
            else:
                before = before_by.get(dpid, {})
                after = after_by.get(dpid, {})
                if sent != mine:
                    before, after = dict(before), dict(after)
                    before.update(sent)
                    after.update(mine)
                if not before and not after:
                    continue
                msgs = self._diff(dpid, before, after, now)
            self._synced[dpid] = mine
            if msgs:
                acts.append(FlowMods(dpid, msgs))
        return acts

    def release(self, ap: ActivePath) -> list[FlowMods]:
        """Delete a released path's relay flows (one delete by cookie per switch) and forget
        them, touching only this path's flows: no walk over the whole table."""
        acts: list[FlowMods] = []
        planned = ap.plan[1] if ap.plan else {}
        for dpid in sorted(ap.flows):
            if dpid in self.installed:
                acts.append(FlowMods(dpid, [ofmsgs.delete_cookie(ap.cookie)]))
                have = self.installed[dpid]
                gone = [f.key for f in planned.get(dpid, ()) if f.key in have
                        and have[f.key].cookie == ap.cookie]
                for k in gone:
                    del have[k]
                sent = self._synced.get(dpid)
                if sent is not None:
                    self._synced[dpid] = {k: f for k, f in sent.items() if k not in gone}
        return acts

    # -- internals ---------------------------------------------------------------------------
    def _changes(self, these: Pieces, others: Pieces) -> dict[int, Table]:
        """Per switch, the flows of the pieces in ``these`` that are not in ``others``."""
        out: dict[int, Table] = {}
        everywhere: list[FlowSpec] = []
        for key, piece in these.items():
            if key in others:
                continue
            if isinstance(piece, _Everywhere):
                everywhere.extend(piece.flows)
                continue
            for dpid, fs in piece.items():
                t = out.setdefault(dpid, {})
                for f in fs:
                    t[f.key] = f
        if everywhere:
            for dpid in self.installed:
                t = out.setdefault(dpid, {})
                for f in everywhere:
                    t[f.key] = f
        return out

    def _routes(self, st: NetworkState) -> flows.Routes:
        v = st.links_version
        if self._route_cache[0] != v:
            self._route_cache = (v, flows.Routes(st.classical), flows.spanning_tree_ports(st.classical))
        return self._route_cache[1]

    def _switch_inputs(self, st: NetworkState) -> dict[int, tuple]:
        """Per switch, what its own base flows depend on besides its hosts: (ports, link ports,
        edge ports, spanning-tree ports), computed once per links version."""
        if self._inputs[0] == st.links_version:
            return self._inputs[1]
        self._routes(st)
        tree = self._route_cache[2]
        links: dict[int, set[int]] = {d: set() for d in st.classical}
        for u, v, data in st.classical.edges(data=True):
            links[u].add(data["ports"][u])
            links[v].add(data["ports"][v])
        out: dict[int, tuple] = {}
        for dpid in st.classical:
            ports = frozenset(st.switch_ports.get(dpid, ()))
            edge = frozenset(p for p in ports - links[dpid] if (dpid, p) not in st.former_link_ports)
            out[dpid] = (ports, frozenset(links[dpid]), edge, frozenset(tree[dpid]))
        self._inputs = (st.links_version, out)
        return out

    def _base_pieces(self, st: NetworkState) -> Pieces:
        """The base flows as pieces, rebuilt only when the classical network or the online nodes
        change; a piece whose name did not change is the same object as before (not replanned)."""
        drops = frozenset((a.data_ip, a.relay_port) for a in st.agents.values()
                          if a.data_ip and a.relay_port and a.node_id in st.online)
        stamp = (st.classical_version, drops)
        if self._pieces[0] == stamp:
            return self._pieces[1]
        old = self._pieces[1]
        routes = self._routes(st)
        local = self._switch_inputs(st)
        hb = flows.host_bindings(st)
        pieces: Pieces = {}
        for dpid in st.classical:
            # a switch's own flows depend on its ports, links, spanning-tree ports and hosts only:
            # a link elsewhere does not replan them
            key = ("switch", dpid, local[dpid], hb[dpid])
            piece = old.get(key)
            pieces[key] = piece if piece is not None else \
                {dpid: tuple(flows.switch_flows(st, dpid, local[dpid][-1], hb[dpid]))}
        for ip, port in sorted(drops):
            key = ("drop", ip, port)
            piece = old.get(key)
            pieces[key] = piece if piece is not None else _Everywhere((flows.relay_drop(ip, port),))
        if self._trees[0] != st.links_version:
            self._trees = (st.links_version, {})
        trees: dict[int, tuple] = self._trees[1]
        for h in sorted(st.hosts.values(), key=lambda h: h.ip):
            # a host's routes depend on its attachment and the out-ports of the tree toward its
            # switch: a link that no route toward it crosses leaves them as they are
            tree = trees.get(h.dpid)
            if tree is None:
                tree = trees[h.dpid] = _Hashed(flows.route_ports(st.classical, routes, h.dpid))
            key = ("host", h.ip, h.dpid, h.port, tree)
            piece = old.get(key)
            pieces[key] = piece if piece is not None else \
                {d: tuple(fs) for d, fs in flows.host_flows(st, h, routes).items()}
        self._pieces = (stamp, pieces)
        return pieces

    def _relay_overlay(self, st: NetworkState, paths: Mapping[str, ActivePath],
                       now: float) -> dict[int, Table]:
        """Every active path's relay flows by switch (planned once per classical version)."""
        over: dict[int, Table] = {}
        for pid in sorted(paths):
            ap = paths[pid]
            hops = []
            for a, b in zip(ap.nodes, ap.nodes[1:]):
                ia, ib = st.agents.get(a), st.agents.get(b)
                if ia and ib and ia.data_ip and ib.data_ip and ib.relay_port:
                    hops.append(flows.Hop(ia.data_ip, ib.data_ip, ib.relay_port))
            stamp = (st.classical_version, tuple(hops))
            if ap.plan is None or ap.plan[0] != stamp:
                hard = max(1, math.ceil(ap.expires_at - now))
                ap.plan = (stamp,) + flows.relay_flows(st, hops, ap.cookie, hard, self._routes(st))
            _, planned, missing = ap.plan
            ap.unplanned_hops = len(missing) if st.switch_ports else 0
            ap.flows = {dpid: len(fs) for dpid, fs in planned.items() if dpid in self.installed}
            for dpid, fs in planned.items():
                mine = over.setdefault(dpid, {})
                for f in fs:
                    cur = mine.get(f.key)
                    # Two paths sharing a hop: the later-expiring authorisation keeps the flow.
                    if cur is None or (self._expiry(cur.cookie), -cur.cookie) < (ap.expires_at, -f.cookie):
                        mine[f.key] = f
        return over

    def _expiry(self, cookie: int) -> float:
        ap = self._by_cookie.get(cookie)
        return ap.expires_at if ap else 0.0

    def _diff(self, dpid: int, old: Table, new: Table, now: float, replace_all: bool = False) -> list:
        """Messages turning ``old`` into ``new`` on one switch; updates ``installed``. With
        ``replace_all`` the two are whole tables, else only the relay flows (base unchanged)."""
        have = self.installed[dpid]
        msgs = [ofmsgs.delete_strict(have.get(k, f)) for k, f in old.items() if k not in new]
        for k, f in new.items():
            cur = have.get(k)
            if cur is None or cur.body != f.body:
                ap = self._by_cookie.get(f.cookie)
                if ap is not None:   # timeouts count from now, whenever the flow is (re)sent
                    hard = max(1, math.ceil(ap.expires_at - now))
                    f = replace(f, idle_timeout=hard, hard_timeout=hard)
                msgs.append(ofmsgs.add(f))
        if replace_all:
            self.installed[dpid] = dict(new)
        else:
            for k in old:
                if k not in new:
                    have.pop(k, None)
            have.update(new)
        return msgs
