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


class FlowReconciler:
    """The flows installed on every connected switch, and the caches that keep a path setup
    from replanning (or comparing) flows whose inputs did not change."""

    def __init__(self) -> None:
        self.installed: dict[int, Table] = {}    # dpid -> what the switch was sent
        self._base: tuple = (None, {})   # (classical version + relay drops, base flows by switch)
        self._route_cache: tuple = (None, None, None)   # (links version, routes, spanning tree)
        self._flow_cache: dict[tuple, object] = {}  # per-switch and per-host base flows
        self._synced: dict[int, tuple] = {}      # dpid -> (base stamp, relay flows) last reconciled
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

        Filter first: when the base flows are unchanged since a switch was last reconciled,
        only its relay flows are compared (a path setup looks at the few flows it changes,
        not at every host route of every switch); switches whose relay flows did not change
        are skipped."""
        if not self.installed:   # no switches (local loopback network): nothing to plan
            return []
        self._by_cookie = {ap.cookie: ap for ap in paths.values()}
        stamp, base = self._base_flows(st)
        over = self._relay_overlay(st, paths, now)
        acts: list[FlowMods] = []
        for dpid in sorted(self.installed):
            mine = over.get(dpid, {})
            synced = self._synced.get(dpid)
            if synced is not None and synced[0] == stamp:
                old = synced[1]
                if old == mine:
                    continue
                msgs = self._diff(dpid, old, mine, now)
            else:
                msgs = self._diff(dpid, self.installed[dpid], {**base.get(dpid, {}), **mine}, now,
                                  replace_all=True)
            self._synced[dpid] = (stamp, mine)
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
                synced = self._synced.get(dpid)
                if synced is not None:
                    self._synced[dpid] = (synced[0], {k: f for k, f in synced[1].items()
                                                      if k not in gone})
        return acts

    # -- internals ---------------------------------------------------------------------------
    def _routes(self, st: NetworkState) -> flows.Routes:
        v = st.links_version
        if self._route_cache[0] != v:
            self._route_cache = (v, flows.Routes(st.classical), flows.spanning_tree_ports(st.classical))
        return self._route_cache[1]

    def _base_flows(self, st: NetworkState) -> tuple[tuple, dict[int, Table]]:
        """Base forwarding, rebuilt only when the classical network or relay drops change; each
        switch's own flows and each host's routes are cached until their inputs change."""
        drops = frozenset((a.data_ip, a.relay_port) for a in st.agents.values()
                          if a.data_ip and a.relay_port and a.node_id in st.online)
        stamp = (st.classical_version, drops)
        if self._base[0] == stamp:
            return self._base
        routes = self._routes(st)
        tree = self._route_cache[2]
        hb = flows.host_bindings(st)
        cache, fresh = self._flow_cache, {}
        base: dict[int, Table] = {}
        for dpid in st.classical:
            key = ("switch", dpid, st.links_version, drops, hb[dpid])
            fs = fresh[key] = cache.get(key) or flows.switch_flows(st, dpid, drops, tree[dpid], hb[dpid])
            base[dpid] = {f.key: f for f in fs}
        for h in sorted(st.hosts.values(), key=lambda h: h.ip):
            key = ("host", h.ip, h.dpid, h.port, st.links_version)
            per = fresh[key] = cache.get(key) or flows.host_flows(st, h, routes)
            for dpid, fs in per.items():
                for f in fs:
                    base[dpid][f.key] = f
        self._flow_cache = fresh
        self._base = (stamp, base)
        return self._base

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
