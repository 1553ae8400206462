"""QuSeCCore: the controller's pure decision core (events in, actions out; no sockets, time passed in).

A facade: it sequences admission (rate limits, reservations), the path search, rerouting and
flow reconciliation, each in its own module, and returns the actions the shim must carry out."""
from __future__ import annotations

import logging
import uuid
from collections import Counter

from quseccontroller import abstract, etsi015, ofmsgs, registration
from quseccontroller.actions import Action, FlowMods, PathDecision, PathRequest, Revoke
from quseccontroller.admission import Admission, reserve, unreserve
from quseccontroller.grants import ActivePath, authorisations
from quseccontroller.hostprobe import HostProber
from quseccontroller.inventory import Inventory
from quseccontroller.pathcost import Constraints
from quseccontroller.paths import compute
from quseccontroller.policy import PolicyTable, default_table
from quseccontroller.reconcile import FlowReconciler
from quseccontroller.reroute import reroute_broken
from quseccontroller.state import (LINK_OFF, REPORT_INTERVAL_S, REPORTS_PER_S, AgentInfo, LinkState,
                                   NetworkState)

log = logging.getLogger(__name__)


class NotPathSource(Exception):
    """Only a path's source node may release it early."""


class QuSeCCore:
    """Network state + policy + paths + flows. Every event method returns a list of actions."""

    def __init__(self, policy: PolicyTable | None = None, *, path_ttl_s: float = 60.0,
                 reservation_s: float = 5.0, inventory: Inventory | None = None) -> None:
        self.policy = policy or default_table()
        self.path_ttl_s = float(path_ttl_s)
        self.state = NetworkState()
        self.paths: dict[str, ActivePath] = {}
        self.counters: Counter = Counter()
        self.admission = Admission(reservation_s)
        self.reconciler = FlowReconciler()
        self.prober = HostProber()
        self.inventory: Inventory | None = None
        self._seq = 0
        if inventory is not None:
            self.set_inventory(inventory)

    # -- agents ------------------------------------------------------------------------------
    def agent_registered(self, info: AgentInfo, now: float,
                         addresses: tuple[str, ...] | None = None) -> list[Action]:
        """Take a registration checked against the inventory and, given ``addresses`` (its
        certificate's IP addresses), its relay address and data IP; registration.Refused
        when QuSeC does not take it (nothing changes then)."""
        info = registration.admit(info, self.inventory, addresses)
        log.info("agent %s registered (relay %s, data ip %s, %d links)", info.node_id,
                 info.relay_addr, info.data_ip, len(info.links))
        self.state.register(info, now)
        return self._reroute() + self._reconcile(now) + self.prober.probe(self.state, now)

    def screen_report(self, node_id: str, links: list[LinkState]
                      ) -> tuple[list[LinkState], list[registration.LinkRefusal]]:
        """The link states ``node_id`` may report (its inventory links) and those it may not."""
        return registration.screen_links(node_id, links, self.inventory)

    def agent_report(self, node_id: str, links: list[LinkState], now: float) -> list[Action]:
        """Take a node's link report (links it may not report are dropped: ``screen_report``);
        paths over a link that went OFF, or whose ends stopped agreeing, move."""
        links, refused = self.screen_report(node_id, links)
        self.counters["report_links_refused"] += len(refused)
        lost = self.state.report(node_id, links, now)
        if lost or any(ls.status == LINK_OFF for ls in links):
            return self._reroute() + self._reconcile(now)
        return []

    def agent_gone(self, node_id: str, now: float) -> list[Action]:
        log.info("agent %s gone", node_id)
        self.state.agent_gone(node_id)
        return self._reroute() + self._reconcile(now)

    # -- switches ----------------------------------------------------------------------------
    def switch_up(self, dpid: int, ports: list[int], now: float) -> list[Action]:
        self.state.switch_up(dpid, ports)
        self.reconciler.switch_up(dpid)
        acts = self._reconcile(now)
        first = [m for a in acts if isinstance(a, FlowMods) and a.dpid == dpid for m in a.msgs]
        rest = [a for a in acts if not (isinstance(a, FlowMods) and a.dpid == dpid)]
        self.prober.forget()   # a new switch: quiet hosts may sit behind it
        return [FlowMods(dpid, [ofmsgs.delete_all_ours()] + first)] + rest

    def switch_down(self, dpid: int, now: float) -> list[Action]:
        self.state.switch_down(dpid)
        self.reconciler.switch_down(dpid)
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
        self.admission.drop_old_reservations(self.state, self.paths.values(), now)
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

        dst_saes = tuple(dict.fromkeys((req.dst_sae,) + tuple(req.dst_saes))) if req.dst_sae \
            else tuple(req.dst_saes)
        if req.handoff is not None:
            wrong = self._handoff_refusal(req, dst, dst_saes)
            if wrong:
                return refuse("invalid_handoff", wrong)
        for label, n, saes in (("source", src, (req.src_sae,) if req.src_sae else ()),
                               ("destination", dst, dst_saes)):
            sae = saes[0] if saes else ""
            if not n and sae and label == "destination":   # the agent does not know the SAE
                return refuse("unknown_sae", f"destination SAE {sae!r} is not an SAE of this network")
            if not n or n not in st.qkd or not st.node_up(n):
                what = f"{label} node {n or '?'!r}" + (f" (SAE {sae!r})" if sae and not n else "")
                return refuse("unknown_node", f"{what} is not registered with QuSeC")
            # the slave SAEs of a handoff, and the master SAE of a key that came in over an
            # interworking site to its KME here, are other domains' SAEs
            foreign = req.handoff is not None if label == "destination" else self._is_site_kme(n)
            for sae in saes:
                home = st.node_of_sae(sae)
                if home and home != n and not (foreign and label == "destination"):
                    return refuse("unknown_node", f"{label} SAE {sae!r} is attached to node "
                                  f"{home!r}, not {n!r}")
                if home and foreign and label == "destination":
                    return refuse("invalid_handoff", f"SAE {sae!r} is an SAE of this domain: "
                                  "its key is not handed off")
                if home is None and not foreign:   # an SAE no node has: nothing may be relayed for it
                    return refuse("unknown_sae", f"{label} SAE {sae!r} is not an SAE of node {n!r}")
        if d.action == "deny":
            return refuse("policy_deny", f"rule {m.rule!r} denies {src}->{dst}")
        if req.handoff is not None and req.handoff.kind == "pqc":
            # the key would be at the post-quantum level: the source domain's policy must allow
            # it, and a key already in flight from another domain keeps the level it came at
            if not d.allow_pqc_fallback:
                return refuse("policy_deny", f"rule {m.rule!r} does not allow the post-quantum "
                              f"level (allow_pqc_fallback): no key over PQC link {req.handoff.crossing}")
            if req.src_sae and st.node_of_sae(req.src_sae) is None:
                return refuse("invalid_handoff", f"a key of another domain's SAE {req.src_sae!r} "
                              f"does not go on over PQC link {req.handoff.crossing}")
        if d.rate_limit_bps and not self.admission.within_rate(req, d, now):
            return refuse("rate_limit", f"rule {m.rule!r} limits {req.src_sae}->{req.dst_sae} to "
                          f"{d.rate_limit_bps:g} bit/s")
        if d.security_level == "pqc":
            self.admission.take(req, d, now)
            decision.granted, decision.reason = True, f"rule {m.rule!r}: post-quantum only, no relay"
            return decision, []
        c = Constraints(need_bits=req.bits, min_trust=d.min_trust, exclude=d.exclude_nodes,
                        max_hops=d.max_hops, metric=d.metric)
        res = compute(st, src, dst, c, 1 if req.handoff is not None else d.paths)
        if not res.ok or len(res.paths) < (1 if req.handoff is not None else d.paths):
            if d.allow_pqc_fallback:
                self.admission.take(req, d, now)
                decision.granted, decision.security_level = True, "pqc"
                decision.reason = f"rule {m.rule!r}: PQC fallback, {res.reason}"
                self.counters["granted_pqc_fallback"] += 1
                return decision, []
            return refuse(res.refusal, res.reason)
        self.admission.take(req, d, now)
        expires = now + self.path_ttl_s
        acts: list[Action] = []
        for i, (nodes, links, cost) in enumerate(zip(res.paths, res.links, res.costs)):
            self._seq += 1
            ap = ActivePath(f"qp{self._seq}-{uuid.uuid4().hex[:12]}", self._seq, nodes, links, req,
                            m.rule, d, d.security_level, i, len(res.paths), now, expires, cost)
            ap.foreign_src_sae = bool(req.src_sae) and st.node_of_sae(req.src_sae) is None
            reserve(st, ap)
            self.paths[ap.path_id] = ap
            acts += authorisations(ap, st.agents)
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

    def _is_site_kme(self, node: str) -> bool:
        """Whether ``node`` is this domain's KME at an interworking site or a PQC link's end (keys
        of other domains' SAEs come in there, over ETSI GS QKD 020 or ML-KEM, and go on)."""
        borders = self.inventory.borders if self.inventory else ()
        return any(b.node == node and b.kind in ("etsi020", "pqc") for b in borders)

    def _handoff_refusal(self, req: PathRequest, dst: str, dst_saes: tuple[str, ...]) -> str:
        """Why a handoff request does not hold ("" when it does): it must end at this domain's
        KME of the named crossing, toward the peer KME the inventory names there."""
        h = req.handoff
        borders = self.inventory.borders if self.inventory else ()
        if h.kind not in ("etsi020", "pqc"):
            return (f"crossing {h.crossing!r} of kind {h.kind!r}: keys are handed off at interworking "
                    f"sites (etsi020) and PQC links (pqc) only")
        if dst != h.exit_node:
            return f"a handoff at {h.exit_node!r} must end there, not at {dst!r}"
        if not any(b.node == dst and b.crossing == h.crossing and b.kind == h.kind and
                   b.peer_domain == h.peer_domain and b.peer_node == h.peer_kme for b in borders):
            return (f"node {dst!r} is not this domain's KME at crossing {h.crossing!r} toward "
                    f"{h.peer_domain}/{h.peer_kme}")
        if not dst_saes:
            return "a handoff names the slave SAE(s) it carries the key for"
        return ""

    def release_path(self, path_id: str, now: float, reason: str = "released", *,
                     by: str = "") -> list[Action]:
        """Release a path (``by``: the node asking, which must be its source, else
        NotPathSource and nothing is released); [] when there is no such path."""
        ap = self.paths.get(path_id)
        if ap is None:
            return []
        if by and by != ap.nodes[0]:
            raise NotPathSource(f"node {by!r} may not release path {path_id}: only its source "
                                f"node {ap.nodes[0]!r} may")
        del self.paths[path_id]
        unreserve(self.state, ap)
        acts: list[Action] = [Revoke(n, ap.path_id, reason) for n in ap.nodes]
        acts += self.reconciler.release(ap)
        return acts + self._reconcile(now)

    def expire(self, now: float) -> list[Action]:
        self.admission.drop_old_reservations(self.state, self.paths.values(), now)
        acts: list[Action] = self.prober.probe(self.state, now)
        for pid in sorted(p for p, ap in self.paths.items() if ap.expires_at <= now):
            self.counters["expired"] += 1
            acts += self.release_path(pid, now, "expired")
        return acts

    def reload_policy(self, table: PolicyTable) -> list[Action]:
        """Swap the policy table; granted paths keep running until they expire."""
        self.policy = table
        return []

    def set_inventory(self, inventory: Inventory | None) -> list[Action]:
        """Take (or swap) QuSeC's inventory: the nodes that may join (trust level, SAEs), their
        QKD links and each link's relay-hop latency. Registrations are checked against it from
        now on (nodes already registered stay until they register again); granted paths keep
        running until they expire."""
        self.inventory = inventory
        if inventory is None:
            self.state.clear_inventory()
            return []
        latencies = inventory.hop_latencies()
        self.state.set_inventory(((n.id, n.trust, n.saes) for n in inventory.nodes),
                                 ((x.id, x.a, x.b) for x in inventory.links), latencies)
        log.info("inventory %s: %d nodes, %d links, %d with a hop latency", inventory.source,
                 len(inventory.nodes), len(inventory.links), len(latencies))
        return []

    def report_interval_ms(self) -> int:
        """How often agents report: every ``REPORT_INTERVAL_MS``, or less often when the network
        (its inventory, else the agents registered) is too large for the app to take every
        report at that pace (``REPORTS_PER_S``)."""
        nodes = len(self.inventory.nodes) if self.inventory is not None else len(self.state.agents)
        ms = max(int(REPORT_INTERVAL_S * 1000), -(-nodes * 1000 // REPORTS_PER_S))
        self.state.report_interval_s = ms / 1000   # how old a report may be (level disputes)
        return ms

    # -- views -------------------------------------------------------------------------------
    def export_domain(self, seq: int) -> abstract.DomainExport | None:
        """What this domain tells its parent (None: the inventory names no [domain])."""
        inv = self.inventory
        if inv is None or not inv.domain:
            return None
        return abstract.export(self.state, inv.domain, list(inv.borders), seq=seq, transit=inv.transit)

    def reach_from(self, node: str) -> dict[str, abstract.Reach]:
        """What the domain carries from ``node`` to each of its (usable) borders."""
        g = abstract.usable_graph(self.state)
        borders = self.inventory.borders if self.inventory else ()
        return {b.node: r for b in borders if (r := abstract.reach(g, node, b.node)) is not None}

    def export_etsi015(self) -> dict:
        return etsi015.export(self.state, self.paths, self.path_ttl_s)

    def status(self) -> dict:
        st = self.state
        return {
            "nodes": {n: {"online": n in st.online, "trust": st.trust(n),
                          "relay_addr": st.agents[n].relay_addr if n in st.agents else "",
                          "location": self._location(n), "switch": self._switch_of(n)}
                      for n in sorted(st.qkd)},
            "links": {lid: {"a": r.a, "b": r.b, "skr_bps": r.skr_bps, "stored_bits": dict(r.stored),
                            "peer_stored_bits": dict(r.peer_stored), "status": r.overall_status(),
                            "disputed": r.disputed, "alarm": r.alarm(), "qber": r.max_qber(),
                            "consumption_bps": dict(r.consumption)} for lid, r in sorted(st.links.items())},
            "paths": {pid: {"nodes": ap.nodes, "rule": ap.rule, "expires_at": ap.expires_at,
                            "share": f"{ap.share_index + 1}/{ap.share_count}",
                            "flows": sum(ap.flows.values()), "unplanned_hops": ap.unplanned_hops}
                      for pid, ap in sorted(self.paths.items())},
            "switches": sorted(st.switch_ports),
            "switch_links": len(st.classical.edges),
            "hosts": len(st.hosts),
            "flows": self.reconciler.flow_count(),
            "policy": self.policy.source,
            "inventory": self.inventory.source if self.inventory else "",
            "link_disputes": st.disputes,
            "counters": dict(self.counters),
        }

    def _location(self, node: str) -> list[float] | None:
        """Where the inventory puts ``node`` (the dashboard draws it there)."""
        inv = self.inventory.node(node) if self.inventory else None
        return list(inv.location) if inv is not None and inv.location is not None else None

    def _switch_of(self, node: str) -> int | None:
        """The switch ``node``'s agent host is attached to (None: not seen)."""
        agent = self.state.agents.get(node)
        host = self.state.hosts.get(agent.data_ip) if agent is not None and agent.data_ip else None
        return host.dpid if host is not None else None

    # -- internals ---------------------------------------------------------------------------
    def _reroute(self) -> list[Action]:
        return reroute_broken(self.state, self.paths, self.counters)

    def _reconcile(self, now: float) -> list[Action]:
        return list(self.reconciler.reconcile(self.state, self.paths, now))
