"""QuSeCCore: the controller's pure decision core (events in, actions out; no sockets, time passed in)."""
from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace

from quseccontroller import etsi015, flows, ofmsgs
from quseccontroller.actions import (Action, Authorise, FlowMods, PathDecision, PathRequest,
                                     RelayAuthorisation, Revoke)
from quseccontroller.ofmsgs import FlowSpec
from quseccontroller.paths import Constraints, compute
from quseccontroller.policy import Decision, PolicyTable, default_table
from quseccontroller.state import LINK_OFF, AgentInfo, LinkState, NetworkState

log = logging.getLogger(__name__)


@dataclass
class ActivePath:
    """One granted relay path (one share of a multipath grant)."""
    path_id: str
    seq: int
    nodes: list[str]
    links: list[str]
    request: PathRequest
    rule: str
    decision: Decision
    security_level: str
    share_index: int
    share_count: int
    granted_at: float
    expires_at: float
    cost: float
    reserved: list[tuple[str, str, int]] = field(default_factory=list)  # (link, from node, bits)
    flows: dict[int, int] = field(default_factory=dict)                 # dpid -> relay flows
    unplanned_hops: int = 0
    plan: tuple | None = None   # (classical version + hops, flows by switch, unplanned hops)

    @property
    def cookie(self) -> int:
        return ofmsgs.path_cookie(self.seq)


class QuSeCCore:
    """Network state + policy + paths + flows. Every event method returns a list of actions."""

    def __init__(self, policy: PolicyTable | None = None, *, path_ttl_s: float = 60.0,
                 reservation_s: float = 5.0) -> None:
        self.policy = policy or default_table()
        self.path_ttl_s = float(path_ttl_s)
        # A grant reserves its key on every hop so that concurrent requests cannot count the same
        # link key twice. Once the relay has happened, the agents' reports show the key gone, so the
        # reservation is dropped after reservation_s (or at release) instead of counting it twice.
        self.reservation_s = float(reservation_s)
        self.state = NetworkState()
        self.paths: dict[str, ActivePath] = {}
        self.installed: dict[int, dict[tuple, FlowSpec]] = {}
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self.counters: Counter = Counter()
        self._seq = 0
        self._base: tuple = (None, {})   # (classical version + relay ports, base flows by switch)
        self._probed: dict[str, float] = {}   # vKMS data IP -> when it was last ARP-probed
        self._route_cache: tuple = (None, None, None)
        self._flow_cache: dict[tuple, object] = {}  # per-switch and per-host base flows
        self._synced: dict[int, tuple] = {}      # dpid -> (base stamp, relay flows) last reconciled
        self._by_cookie: dict[int, ActivePath] = {}

    # -- agents ------------------------------------------------------------------------------
    def agent_registered(self, info: AgentInfo, now: float) -> list[Action]:
        log.info("agent %s registered (relay %s, data ip %s, %d links)", info.node_id,
                 info.relay_addr, info.data_ip, len(info.links))
        self.state.register(info, now)
        return self._reroute_qkd(now) + self._reconcile(now) + self._probe_quiet_hosts(now)

    def agent_report(self, node_id: str, links: list[LinkState], now: float) -> list[Action]:
        self.state.report(node_id, links, now)
        if any(ls.status == LINK_OFF for ls in links):
            return self._reroute_qkd(now) + self._reconcile(now)
        return []

    def agent_gone(self, node_id: str, now: float) -> list[Action]:
        log.info("agent %s gone", node_id)
        self.state.agent_gone(node_id)
        return self._reroute_qkd(now) + self._reconcile(now)

    # -- switches ----------------------------------------------------------------------------
    def switch_up(self, dpid: int, ports: list[int], now: float) -> list[Action]:
        self.state.switch_up(dpid, ports)
        self.installed[dpid] = {}
        self._synced.pop(dpid, None)
        acts = self._reconcile(now)
        first = [m for a in acts if isinstance(a, FlowMods) and a.dpid == dpid for m in a.msgs]
        rest = [a for a in acts if not (isinstance(a, FlowMods) and a.dpid == dpid)]
        self._probed.clear()   # a new switch: quiet hosts may sit behind it
        return [FlowMods(dpid, [ofmsgs.delete_all_ours()] + first)] + rest

    def switch_down(self, dpid: int, now: float) -> list[Action]:
        self.state.switch_down(dpid)
        self.installed.pop(dpid, None)
        self._synced.pop(dpid, None)
        return self._reconcile(now)

    def link_up(self, a: tuple[int, int], b: tuple[int, int], now: float) -> list[Action]:
        return self._reconcile(now) if self.state.link_up(a, b) else []

    def link_down(self, a: tuple[int, int], b: tuple[int, int] | None, now: float) -> list[Action]:
        changed = self.state.link_down(a)
        if b is not None:
            changed = self.state.link_down(b) or changed
        return self._reconcile(now) if changed else []

    def port_down(self, dpid: int, port: int, now: float) -> list[Action]:
        return self._reconcile(now) if self.state.port_down(dpid, port) else []

    def host_seen(self, mac: str, ip: str, dpid: int, port: int, now: float) -> list[Action]:
        if mac.lower() == ofmsgs.PROBE_MAC or not ip or ip == "0.0.0.0":
            return []   # our own ARP probe coming back over a not yet discovered link
        return self._reconcile(now) if self.state.host_seen(mac, ip, dpid, port, now) else []

    # -- paths -------------------------------------------------------------------------------
    def request_path(self, req: PathRequest, now: float) -> tuple[PathDecision, list[Action]]:
        self.counters["requests"] += 1
        self._drop_old_reservations(now)
        st = self.state
        src = req.src_node or (st.node_of_sae(req.src_sae) or "")
        dst = req.dst_node or (st.node_of_sae(req.dst_sae) or "")
        m = self.policy.match(src_node=src, dst_node=dst, src_sae=req.src_sae,
                              dst_sae=req.dst_sae, application=req.application)
        d = m.decision
        decision = PathDecision(granted=False, rule=m.rule, security_level=d.security_level)

        def refuse(refusal: str, reason: str) -> tuple[PathDecision, list[Action]]:
            self.counters[f"refused_{refusal}"] += 1
            decision.refusal, decision.reason = refusal, reason
            log.info("path %s->%s refused (%s): %s", src, dst, refusal, reason)
            return decision, []

        for label, n, sae in (("source", src, req.src_sae), ("destination", dst, req.dst_sae)):
            if not n or n not in st.qkd or (st.agents and n not in st.online):
                what = f"{label} node {n or '?'!r}" + (f" (SAE {sae!r})" if sae and not n else "")
                return refuse("unknown_node", f"{what} is not registered with QuSeC")
            home = st.node_of_sae(sae) if sae else None
            if home and home != n:
                return refuse("unknown_node", f"{label} SAE {sae!r} is attached to node {home!r}, not {n!r}")
        if d.action == "deny":
            return refuse("policy_deny", f"rule {m.rule!r} denies {src}->{dst}")
        if d.rate_limit_bps and not self._take_tokens(req, d, now, commit=False):
            return refuse("rate_limit", f"rule {m.rule!r} limits {req.src_sae}->{req.dst_sae} to "
                          f"{d.rate_limit_bps:g} bit/s")
        if d.security_level == "pqc":
            self._take_tokens(req, d, now, commit=True)
            decision.granted, decision.reason = True, f"rule {m.rule!r}: post-quantum only, no relay"
            return decision, []
        c = Constraints(need_bits=req.bits, min_trust=d.min_trust, exclude=d.exclude_nodes,
                        max_hops=d.max_hops, metric=d.metric)
        res = compute(st, src, dst, c, d.paths)
        if not res.ok or len(res.paths) < d.paths:
            if d.allow_pqc_fallback:
                self._take_tokens(req, d, now, commit=True)
                decision.granted, decision.security_level = True, "pqc"
                decision.reason = f"rule {m.rule!r}: PQC fallback, {res.reason}"
                self.counters["granted_pqc_fallback"] += 1
                return decision, []
            return refuse(res.refusal, res.reason)
        self._take_tokens(req, d, now, commit=True)
        expires = now + self.path_ttl_s
        acts: list[Action] = []
        for i, (nodes, links, cost) in enumerate(zip(res.paths, res.links, res.costs)):
            self._seq += 1
            ap = ActivePath(f"qp{self._seq}-{uuid.uuid4().hex[:12]}", self._seq, nodes, links, req,
                            m.rule, d, d.security_level, i, len(res.paths), now, expires, cost)
            for a, lid in zip(nodes, links):
                st.reserve(lid, a, req.bits)
                ap.reserved.append((lid, a, req.bits))
            self.paths[ap.path_id] = ap
            acts += self._authorise(ap)
            decision.paths.append(nodes)
            decision.path_ids.append(ap.path_id)
            decision.costs.append(cost)
        self.counters["granted"] += 1
        decision.granted, decision.cost, decision.expires_at = True, round(sum(res.costs), 6), expires
        decision.reason = f"rule {m.rule!r}: {res.reason}; cost {decision.cost:g}"
        flow_acts = self._reconcile(now)
        decision.flows_installed = sum(self.paths[p].flows.get(dp, 0)
                                       for p in decision.path_ids for dp in self.paths[p].flows)
        log.info("path %s->%s granted by %s: %s", src, dst, m.rule, decision.paths)
        return decision, flow_acts + acts

    def release_path(self, path_id: str, now: float, reason: str = "released") -> list[Action]:
        ap = self.paths.pop(path_id, None)
        if ap is None:
            return []
        for lid, a, bits in ap.reserved:
            self.state.unreserve(lid, a, bits)
        acts: list[Action] = [Revoke(n, ap.path_id, reason) for n in ap.nodes]
        planned = ap.plan[1] if ap.plan else {}
        for dpid in sorted(ap.flows):
            if dpid in self.installed:
                acts.append(FlowMods(dpid, [ofmsgs.delete_cookie(ap.cookie)]))
                have = self.installed[dpid]
                gone = [f.key for f in planned.get(dpid, ()) if f.key in have
                        and have[f.key].cookie == ap.cookie]
                for k in gone:   # only this path's flows: no walk over the whole table
                    del have[k]
                synced = self._synced.get(dpid)
                if synced is not None:
                    self._synced[dpid] = (synced[0], {k: f for k, f in synced[1].items()
                                                      if k not in gone})
        return acts + self._reconcile(now)

    def expire(self, now: float) -> list[Action]:
        self._drop_old_reservations(now)
        acts: list[Action] = self._probe_quiet_hosts(now)
        for pid in sorted(p for p, ap in self.paths.items() if ap.expires_at <= now):
            self.counters["expired"] += 1
            acts += self.release_path(pid, now, "expired")
        return acts

    def reload_policy(self, table: PolicyTable) -> list[Action]:
        """Swap the policy table; granted paths keep running until they expire."""
        self.policy = table
        return []

    # -- views -------------------------------------------------------------------------------
    def export_etsi015(self) -> dict:
        return etsi015.export(self)

    def status(self) -> dict:
        st = self.state
        return {
            "nodes": {n: {"online": n in st.online, "trust": st.trust(n),
                          "relay_addr": st.agents[n].relay_addr if n in st.agents else ""}
                      for n in sorted(st.qkd)},
            "links": {lid: {"a": r.a, "b": r.b, "skr_bps": r.skr_bps, "stored_bits": dict(r.stored),
                            "status": r.overall_status()} for lid, r in sorted(st.links.items())},
            "paths": {pid: {"nodes": ap.nodes, "rule": ap.rule, "expires_at": ap.expires_at,
                            "share": f"{ap.share_index + 1}/{ap.share_count}",
                            "flows": sum(ap.flows.values()), "unplanned_hops": ap.unplanned_hops}
                      for pid, ap in sorted(self.paths.items())},
            "switches": sorted(st.switch_ports),
            "switch_links": len(st.classical.edges),
            "hosts": len(st.hosts),
            "flows": sum(len(f) for f in self.installed.values()),
            "policy": self.policy.source,
            "counters": dict(self.counters),
        }

    # -- internals ---------------------------------------------------------------------------
    PROBE_INTERVAL_S = 5.0

    def _probe_quiet_hosts(self, now: float) -> list[Action]:
        """ARP-probe, out of every switch port that is not a switch link, each registered vKMS
        whose attachment point is still unknown (at most every PROBE_INTERVAL_S per address)."""
        st = self.state
        quiet = sorted(a.data_ip for a in st.agents.values()
                       if a.data_ip and a.data_ip not in st.hosts and a.node_id in st.online
                       and now - self._probed.get(a.data_ip, -1e18) >= self.PROBE_INTERVAL_S)
        if not quiet or not st.switch_ports:
            return []
        acts: list[Action] = []
        for dpid in sorted(st.switch_ports):
            edge = sorted(st.edge_ports(dpid) - {h.port for h in st.hosts.values() if h.dpid == dpid})
            if edge:
                acts.append(FlowMods(dpid, [ofmsgs.arp_probe(ip, edge) for ip in quiet]))
        for ip in quiet:
            self._probed[ip] = now
        return acts

    def _drop_old_reservations(self, now: float) -> None:
        for ap in self.paths.values():
            if ap.reserved and now - ap.granted_at >= self.reservation_s:
                for lid, a, bits in ap.reserved:
                    self.state.unreserve(lid, a, bits)
                ap.reserved = []

    def _take_tokens(self, req: PathRequest, d: Decision, now: float, commit: bool) -> bool:
        if not d.rate_limit_bps:
            return True
        key = (req.src_sae or req.src_node, req.dst_sae or req.dst_node)
        depth = d.rate_limit_bps * d.rate_burst_s
        tokens, last = self.buckets.get(key, (depth, now))
        tokens = min(depth, tokens + (now - last) * d.rate_limit_bps)
        ok = tokens >= req.bits
        if commit:
            self.buckets[key] = (tokens - req.bits, now)
        return ok

    def _authorise(self, ap: ActivePath) -> list[Action]:
        agents, n = self.state.agents, ap.nodes
        acts: list[Action] = []
        for i, node in enumerate(n):
            prev = n[i - 1] if i > 0 else ""
            nxt = n[i + 1] if i + 1 < len(n) else ""
            auth = RelayAuthorisation(
                path_id=ap.path_id, prev_hop=prev, next_hop=nxt,
                prev_hop_addr=agents[prev].relay_addr if prev in agents else "",
                next_hop_addr=agents[nxt].relay_addr if nxt in agents else "",
                expires_unix_ms=int(ap.expires_at * 1000), src_node=n[0], dst_node=n[-1],
                share_index=ap.share_index, share_count=ap.share_count)
            acts.append(Authorise(node, auth))
        return acts

    def _reroute_qkd(self, now: float) -> list[Action]:
        """Paths crossing a QKD link that went OFF or a node that left: move them or revoke them."""
        acts: list[Action] = []
        st = self.state
        for pid in sorted(self.paths):
            ap = self.paths[pid]
            broken = any(not st.links[lid].usable() for lid in ap.links) or \
                any(n not in st.online for n in ap.nodes if st.agents)
            if not broken:
                continue
            for lid, a, bits in ap.reserved:
                st.unreserve(lid, a, bits)
            ap.reserved = []
            others = {n for p in self.paths.values() if p.request is ap.request and p is not ap
                      for n in p.nodes[1:-1]}
            d = ap.decision
            c = Constraints(need_bits=ap.request.bits, min_trust=d.min_trust,
                            exclude=tuple(d.exclude_nodes) + tuple(sorted(others)),
                            max_hops=d.max_hops, metric=d.metric)
            res = compute(st, ap.nodes[0], ap.nodes[-1], c, 1)
            if not res.ok:
                self.paths.pop(pid)
                self.counters["revoked"] += 1
                acts += [Revoke(n, pid, f"rerouting failed: {res.reason}") for n in ap.nodes]
                continue
            old = set(ap.nodes)
            ap.nodes, ap.links, ap.cost = res.paths[0], res.links[0], res.costs[0]
            for a, lid in zip(ap.nodes, ap.links):
                st.reserve(lid, a, ap.request.bits)
                ap.reserved.append((lid, a, ap.request.bits))
            self.counters["rerouted"] += 1
            acts += [Revoke(n, pid, "rerouted") for n in sorted(old - set(ap.nodes))]
            acts += self._authorise(ap)
        return acts

    def _relay_ports(self) -> set[int]:
        return {a.relay_port for a in self.state.agents.values() if a.data_ip and a.relay_port}

    def _routes(self) -> flows.Routes:
        v = self.state.links_version
        if self._route_cache[0] != v:
            self._route_cache = (v, flows.Routes(self.state.classical), flows.spanning_tree_ports(self.state.classical))
        return self._route_cache[1]

    def _base_flows(self) -> tuple[tuple, dict[int, dict[tuple, FlowSpec]]]:
        """Base forwarding, rebuilt only when the classical network or relay ports change; each
        switch's own flows and each host's routes are cached until their inputs change."""
        st = self.state
        ports = self._relay_ports()
        stamp = (st.classical_version, frozenset(ports))
        if self._base[0] == stamp:
            return self._base
        routes = self._routes()
        tree = self._route_cache[2]
        hp = flows.host_ports(st)
        cache, fresh = self._flow_cache, {}
        base: dict[int, dict[tuple, FlowSpec]] = {}
        for dpid in st.classical:
            key = ("switch", dpid, st.links_version, stamp[1], frozenset(hp[dpid]))
            fs = fresh[key] = cache.get(key) or flows.switch_flows(st, dpid, ports, tree[dpid], hp[dpid])
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

    def _relay_overlay(self, now: float) -> dict[int, dict[tuple, FlowSpec]]:
        """Every active path's relay flows by switch (planned once per classical version)."""
        st = self.state
        over: dict[int, dict[tuple, FlowSpec]] = {}
        for pid in sorted(self.paths):
            ap = self.paths[pid]
            hops = []
            for a, b in zip(ap.nodes, ap.nodes[1:]):
                ia, ib = st.agents.get(a), st.agents.get(b)
                if ia and ib and ia.data_ip and ib.data_ip and ib.relay_port:
                    hops.append(flows.Hop(ia.data_ip, ib.data_ip, ib.relay_port))
            stamp = (st.classical_version, tuple(hops))
            if ap.plan is None or ap.plan[0] != stamp:
                hard = max(1, math.ceil(ap.expires_at - now))
                ap.plan = (stamp,) + flows.relay_flows(st, hops, ap.cookie, hard, self._routes())
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

    def _reconcile(self, now: float) -> list[Action]:
        """FlowMods turning what each switch has into what it should have.

        Filter first: when the base flows are unchanged since a switch was last reconciled,
        only its relay flows are compared (a path setup looks at the few flows it changes,
        not at every host route of every switch); switches whose relay flows did not change
        are skipped."""
        if not self.installed:   # no switches (local loopback network): nothing to plan
            return []
        self._by_cookie = {ap.cookie: ap for ap in self.paths.values()}
        stamp, base = self._base_flows()
        over = self._relay_overlay(now)
        acts: list[Action] = []
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

    def _diff(self, dpid: int, old: dict[tuple, FlowSpec], new: dict[tuple, FlowSpec], now: float,
              replace_all: bool = False) -> list:
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
