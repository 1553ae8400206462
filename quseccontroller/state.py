"""QuSeC's view of the network: the QKD overlay and the classical switch topology (networkx)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping

import networkx as nx

log = logging.getLogger(__name__)

# control.proto LinkStatus, by name.
LINK_UNSPECIFIED, LINK_ACTIVE, LINK_PASSIVE, LINK_OFF = "UNSPECIFIED", "ACTIVE", "PASSIVE", "OFF"

# One relay hop's latency when QuSeC's inventory does not give it: with every hop at the default,
# metric "latency" ranks paths exactly like "hops".
DEFAULT_HOP_LATENCY_MS = 1.0

# A node cannot claim more key than its peer sees. Each end reports ``stored_bits`` (key for the
# hops it starts) and ``peer_stored_bits`` (key it sees for the hops its peer starts); honest
# ends agree but for timing: each report is up to one report interval old (REPORT_INTERVAL_S,
# what QuSeC asks of agents) and the two arrive at different moments, and over that lag the link
# makes key and relays use it. So a claim may exceed the peer's view by its slack (the larger of
# LEVEL_SLACK_BITS and LEVEL_SLACK_RATIO of the view) plus (the peer's skr + consumption) x (the
# gap between the two reports + REPORT_INTERVAL_S); beyond that the link is disputed and not
# used until the ends agree again. The peer's own rates bound the tolerance, so a liar cannot
# widen it by reporting a high key rate. A view of 0 means "not known": nothing is checked.
REPORT_INTERVAL_S = 2.0
# The link reports per second the app is asked to take at most: agents report less often in a
# large network (QuSeCCore.report_interval_ms: nodes / this, never under REPORT_INTERVAL_S);
# early reports on a threshold crossing come on top. Well under what one app process takes on
# these machines (bench control, 1,000 agents: 200 reports/s at 12 % of a core; the gateway,
# which also carries every agent's TLS stream, at 34 %).
REPORTS_PER_S = 500
LEVEL_SLACK_BITS = 64 * 1024
LEVEL_SLACK_RATIO = 0.10


@dataclass(frozen=True)
class LinkState:
    """One QKD link end as seen by the reporting node (mirrors control.proto QkdLinkState)."""
    link_id: str
    peer_node: str
    skr_bps: float = 0.0
    stored_bits: int = 0
    consumption_bps: float = 0.0
    status: str = LINK_ACTIVE
    kms_kind: str = "simulated"
    peer_stored_bits: int = 0       # key this end sees for hops the peer initiates (0: unknown)
    alarm: str = ""                 # why the link makes no key (with status OFF), "" for none
    qber: float = 0.0               # the QBER the end's module measures (0: nominal or unknown)


@dataclass(frozen=True)
class AgentInfo:
    """A vKMS agent's registration (mirrors control.proto Register)."""
    node_id: str
    relay_addr: str = ""
    etsi014_url: str = ""
    etsi004_addr: str = ""
    data_ip: str = ""
    trust_level: int = 3
    links: tuple[LinkState, ...] = ()
    saes: tuple[str, ...] = ()
    agent_version: str = ""

    @cached_property
    def relay_port(self) -> int | None:
        """TCP port of the node's relay service (from relay_addr 'host:port')."""
        _, sep, port = self.relay_addr.rpartition(":")
        return int(port) if sep and port.isdigit() else None


@dataclass
class QkdLinkRecord:
    """Both ends of one QKD link as last reported; key is directional (each end's own half)."""
    link_id: str
    a: str
    b: str
    skr_bps: float = 0.0        # the lower of the two ends' reports (one end cannot raise it)
    stored: dict[str, int] = field(default_factory=dict)       # node -> bits at that end
    consumption: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    kms_kind: str = "simulated"
    updated: float = 0.0
    latency_ms: float = DEFAULT_HOP_LATENCY_MS   # one relay hop's latency, for metric "latency"
    off: bool = True            # cached "not usable()", kept current by set_status
    peer_stored: dict[str, int] = field(default_factory=dict)  # node -> bits it sees for its peer's hops
    skr: dict[str, float] = field(default_factory=dict)        # node -> the key rate it reports
    reported: dict[str, float] = field(default_factory=dict)   # node -> when it last reported
    disputed: str = ""          # why the ends' key levels disagree ("" while they agree)
    alarms: dict[str, str] = field(default_factory=dict)      # node -> the alarm it reports
    qber: dict[str, float] = field(default_factory=dict)      # node -> the QBER it reports

    def set_status(self, node: str, status: str) -> None:
        self.status[node] = status
        self.off = not self.usable()

    def usable(self) -> bool:
        """Both ends report it, neither says OFF, and their key levels agree."""
        return (self.a in self.status and self.b in self.status
                and LINK_OFF not in self.status.values() and not self.disputed)

    def level_dispute(self, interval_s: float = REPORT_INTERVAL_S) -> str:
        """Why one end's key claim exceeds what its peer sees beyond the tolerance ("": none)."""
        for x, y in ((self.a, self.b), (self.b, self.a)):
            view = self.peer_stored.get(y, 0)
            if not view or x not in self.stored:
                continue
            gap = abs(self.reported.get(x, 0.0) - self.reported.get(y, 0.0))
            rate = self.skr.get(y, 0.0) + self.consumption.get(y, 0.0)
            tolerance = max(LEVEL_SLACK_BITS, LEVEL_SLACK_RATIO * view) + rate * (gap + interval_s)
            if self.stored[x] > view + tolerance:
                return (f"{x} reports {self.stored[x]} bits for the hops it starts, {y} sees {view} "
                        f"(tolerance {int(tolerance)})")
        return ""

    def stored_from(self, node: str) -> int:
        """Key available for a relay hop initiated at ``node`` (falls back to the peer's report)."""
        if node in self.stored:
            return self.stored[node]
        other = self.b if node == self.a else self.a
        return self.stored.get(other, 0)

    def consumption_from(self, node: str) -> float:
        return self.consumption.get(node, 0.0)

    def alarm(self) -> str:
        """The alarm an end reports ("" for none; the first end's when both do)."""
        return next((self.alarms[n] for n in (self.a, self.b) if self.alarms.get(n)), "")

    def max_qber(self) -> float:
        """The higher QBER the ends report (0: nominal or not known)."""
        return max(self.qber.values(), default=0.0)

    def overall_status(self) -> str:
        if not self.usable():
            return LINK_OFF
        if LINK_ACTIVE in self.status.values():
            return LINK_ACTIVE
        return LINK_PASSIVE


@dataclass(frozen=True)
class HostInfo:
    mac: str
    ip: str
    dpid: int
    port: int
    seen: float


# A host seen on another port within this many seconds of its last sighting stays where it was:
# a broadcast leaking over a not yet discovered switch link comes back to the controller from
# the far switch with the sender's address, and moving the host each time would carry it round
# a ring through the controller.
HOST_MOVE_HOLD_S = 2.0


class NetworkState:
    """The QKD overlay (``qkd``: node pairs, edge attribute ``links``) and the classical network
    (``classical``: switches by dpid, edge attribute ``ports`` {dpid: port}), updated by events."""

    def __init__(self) -> None:
        self.qkd = nx.Graph()
        self.links: dict[str, QkdLinkRecord] = {}
        self.agents: dict[str, AgentInfo] = {}
        self.sae_home: dict[str, str] = {}           # SAE id -> node it is attached to
        self.online: set[str] = set()
        self.classical = nx.Graph()
        self.switch_ports: dict[int, set[int]] = {}
        # Ports LLDP once found a switch link on: not edge ports until the port goes down (LLDP
        # can time out on a loaded controller while the cable is still there).
        self.former_link_ports: set[tuple[int, int]] = set()
        self.hosts: dict[str, HostInfo] = {}          # by IPv4
        self.reserved: dict[tuple[str, str], int] = {}  # (link_id, from_node) -> bits
        self.hop_latency: dict[str, float] = {}      # link id -> relay hop latency (ms), inventory
        self.version = 0  # bumped on every change that can change a path
        self.topo_version = 0  # bumped when a QKD node or link appears
        self.dirty_links: set[str] = set()   # links changed since the path search's arrays were synced
        self.nodes_dirty = True              # node trust or presence changed since then
        self.arc_index = None                # quseccontroller.arcs.ArcIndex, made by the path search
        self.classical_version = 0           # bumped when switches, switch links or hosts change
        self.links_version = 0               # bumped when switches or switch links change
        self.from_inventory = False          # nodes, SAEs and links came from QuSeC's inventory
        self.disputes = 0                    # times a link's ends turned out to disagree
        self.report_interval_s = REPORT_INTERVAL_S   # what the agents were asked (a report's age)

    @property
    def require_online(self) -> bool:
        """Whether only nodes with a live control stream may be on a path: once any agent
        registered, or QuSeC was given its inventory (a bare graph in tests: every node)."""
        return self.from_inventory or bool(self.agents)

    def node_up(self, node: str) -> bool:
        return node in self.online or not self.require_online

    # -- QKD overlay ---------------------------------------------------------------------
    def add_node(self, node_id: str, trust: int = 3) -> None:
        if node_id not in self.qkd:
            self.qkd.add_node(node_id, trust=trust)
            self.topo_version += 1
        else:
            self.qkd.nodes[node_id]["trust"] = trust
        self.nodes_dirty = True
        self.version += 1

    def register(self, info: AgentInfo, now: float) -> list[str]:
        """Take a registration; returns the links that were usable and no longer are."""
        old = self.agents.get(info.node_id)
        if not self.from_inventory:   # with an inventory, each SAE's node comes from it
            for sae in old.saes if old else ():
                self.sae_home.pop(sae, None)
            self.sae_home.update({sae: info.node_id for sae in info.saes})
        self.agents[info.node_id] = info
        self.online.add(info.node_id)
        self.nodes_dirty = True
        self.add_node(info.node_id, info.trust_level)
        # A Register lists all the node's links: an end it no longer reports is forgotten.
        listed = {ls.link_id for ls in info.links}
        lost = []
        for rec in (self.links[lid] for lid in self.links_of(info.node_id) if lid in self.links):
            if rec.link_id not in listed and info.node_id in rec.status:
                was = rec.usable()
                for per_end in (rec.status, rec.stored, rec.peer_stored, rec.consumption, rec.skr,
                                rec.reported, rec.alarms, rec.qber):
                    per_end.pop(info.node_id, None)
                rec.off = not rec.usable()
                self.dirty_links.add(rec.link_id)
                if was:
                    lost.append(rec.link_id)
        return lost + self.report(info.node_id, info.links, now)

    def links_of(self, node: str) -> list[str]:
        """The ids of ``node``'s QKD links (from the overlay's adjacency: O(degree))."""
        if node not in self.qkd:
            return []
        return sorted(lid for nbr in self.qkd[node] for lid in self.qkd[node][nbr].get("links", ()))

    def report(self, node_id: str, links: Iterable[LinkState], now: float) -> list[str]:
        """Take a node's link states; returns the links that were usable and no longer are."""
        lost = []
        for ls in links:
            rec = self.links.get(ls.link_id)
            was = rec is not None and rec.usable()
            rec = self.update_link(node_id, ls, now)
            if was and not rec.usable():
                lost.append(rec.link_id)
        self.version += 1
        return lost

    def add_link(self, link_id: str, a: str, b: str, kms_kind: str = "simulated") -> QkdLinkRecord:
        """The record of a QKD link between ``a`` and ``b`` (made when first needed)."""
        rec = self.links.get(link_id)
        if rec is not None:
            return rec
        a, b = sorted((a, b))
        rec = self.links[link_id] = QkdLinkRecord(
            link_id, a, b, kms_kind=kms_kind,
            latency_ms=self.hop_latency.get(link_id, DEFAULT_HOP_LATENCY_MS))
        for n in (a, b):
            if n not in self.qkd:
                self.qkd.add_node(n, trust=3)
        self.topo_version += 1
        if not self.qkd.has_edge(a, b):
            self.qkd.add_edge(a, b, links=[])
        edge = self.qkd.edges[a, b]
        edge["links"] = sorted(edge["links"] + [link_id])
        self.dirty_links.add(link_id)
        return rec

    def update_link(self, node_id: str, ls: LinkState, now: float) -> QkdLinkRecord:
        rec = self.links.get(ls.link_id) or self.add_link(ls.link_id, node_id, ls.peer_node, ls.kms_kind)
        if node_id not in (rec.a, rec.b):
            log.warning("node %s reported link %s it is not an end of", node_id, ls.link_id)
            return rec
        if ls.skr_bps:
            rec.skr[node_id] = float(ls.skr_bps)
            rec.skr_bps = min(rec.skr.values())
        rec.stored[node_id] = int(ls.stored_bits)
        rec.peer_stored[node_id] = int(ls.peer_stored_bits)
        rec.consumption[node_id] = float(ls.consumption_bps)
        rec.reported[node_id] = now
        rec.alarms[node_id], rec.qber[node_id] = ls.alarm, float(ls.qber)
        dispute = rec.level_dispute(self.report_interval_s)
        if dispute != rec.disputed:
            if dispute and not rec.disputed:
                self.disputes += 1
                log.warning("event=link_disputed link=%s reason=levels %s", rec.link_id, dispute)
            elif not dispute:
                log.info("event=link_agreed link=%s", rec.link_id)
            rec.disputed = dispute
        rec.set_status(node_id, ls.status if ls.status != LINK_UNSPECIFIED else LINK_ACTIVE)
        rec.updated = now
        self.dirty_links.add(rec.link_id)
        return rec

    def agent_gone(self, node_id: str) -> None:
        """The agent's control stream closed: the node can no longer relay; its links go OFF."""
        self.online.discard(node_id)
        self.nodes_dirty = True
        for rec in self.links.values():
            if node_id in (rec.a, rec.b):
                rec.set_status(node_id, LINK_OFF)
                self.dirty_links.add(rec.link_id)
        self.version += 1

    def reserve(self, link_id: str, from_node: str, bits: int) -> None:
        key = (link_id, from_node)
        self.reserved[key] = self.reserved.get(key, 0) + bits
        self.dirty_links.add(link_id)

    def unreserve(self, link_id: str, from_node: str, bits: int) -> None:
        key = (link_id, from_node)
        self.dirty_links.add(link_id)
        left = self.reserved.get(key, 0) - bits
        if left > 0:
            self.reserved[key] = left
        else:
            self.reserved.pop(key, None)

    def set_link_latency(self, link_id: str, latency_ms: float) -> None:
        """Per-hop latency of a QKD link's relay hop (e.g. from fibre length), for metric "latency"."""
        self.links[link_id].latency_ms = float(latency_ms)
        self.dirty_links.add(link_id)

    def set_hop_latencies(self, latencies: Mapping[str, float]) -> None:
        """Relay-hop latency by link id (from QuSeC's inventory), for the links known now and
        those that appear later; a link not named costs DEFAULT_HOP_LATENCY_MS."""
        self.hop_latency = {lid: float(ms) for lid, ms in latencies.items()}
        for lid, rec in self.links.items():
            ms = self.hop_latency.get(lid, DEFAULT_HOP_LATENCY_MS)
            if rec.latency_ms != ms:
                self.set_link_latency(lid, ms)

    def set_inventory(self, nodes: Iterable[tuple[str, int, tuple[str, ...]]],
                      links: Iterable[tuple[str, str, str]], latencies: Mapping[str, float]) -> None:
        """Take QuSeC's inventory: ``nodes`` (id, trust, SAEs) and ``links`` (id, a, b) exist
        before anyone registers, each SAE's node is known from it, and only online nodes may
        be on a path from now on."""
        self.from_inventory = True
        self.sae_home = {}
        for node_id, trust, saes in nodes:
            self.add_node(node_id, trust)
            self.sae_home.update({sae: node_id for sae in saes})
        for link_id, a, b in links:
            self.add_link(link_id, a, b)
        self.set_hop_latencies(latencies)

    def clear_inventory(self) -> None:
        """No inventory any more: SAEs are known from the registrations again."""
        self.from_inventory = False
        self.sae_home = {sae: n for n, info in self.agents.items() for sae in info.saes}
        self.nodes_dirty = True
        self.set_hop_latencies({})

    def trust(self, node: str) -> int:
        return int(self.qkd.nodes[node].get("trust", 3)) if node in self.qkd else 0

    def node_of_sae(self, sae: str) -> str | None:
        return self.sae_home.get(sae)

    # -- classical network ---------------------------------------------------------------
    def switch_up(self, dpid: int, ports: Iterable[int]) -> None:
        self.classical_version += 1
        self.links_version += 1
        self.switch_ports[dpid] = set(int(p) for p in ports)
        self.classical.add_node(dpid)

    def switch_down(self, dpid: int) -> None:
        self.classical_version += 1
        self.links_version += 1
        self.switch_ports.pop(dpid, None)
        self.former_link_ports = {e for e in self.former_link_ports if e[0] != dpid}
        if dpid in self.classical:
            self.classical.remove_node(dpid)
        for ip in [ip for ip, h in self.hosts.items() if h.dpid == dpid]:
            del self.hosts[ip]

    def link_up(self, a: tuple[int, int], b: tuple[int, int]) -> bool:
        (da, pa), (db, pb) = a, b
        if da == db:
            return False
        for d in (da, db):
            self.classical.add_node(d)
        ports = {da: pa, db: pb}
        if self.classical.has_edge(da, db) and self.classical.edges[da, db]["ports"] == ports:
            return False
        self.classical.add_edge(da, db, ports=ports)
        self.former_link_ports |= {(da, pa), (db, pb)}
        self.classical_version += 1
        self.links_version += 1
        # A port that turns out to be a switch link never had a host behind it.
        for ip in [ip for ip, h in self.hosts.items() if (h.dpid, h.port) in ((da, pa), (db, pb))]:
            del self.hosts[ip]
        return True

    def link_down(self, a: tuple[int, int], b: tuple[int, int] | None = None) -> bool:
        da, pa = a
        for nbr in list(self.classical.adj.get(da, {})):
            if self.classical.edges[da, nbr]["ports"][da] == pa:
                self.classical.remove_edge(da, nbr)
                self.classical_version += 1
                self.links_version += 1
                return True
        return False

    def port_down(self, dpid: int, port: int) -> bool:
        changed = self.link_down((dpid, port))
        if (dpid, port) in self.former_link_ports:   # unplugged: may become a host port
            self.former_link_ports.discard((dpid, port))
            self.links_version += 1
            changed = True
        for ip in [ip for ip, h in self.hosts.items() if (h.dpid, h.port) == (dpid, port)]:
            del self.hosts[ip]
            changed = True
        self.classical_version += changed
        return changed

    def link_ports(self, dpid: int) -> set[int]:
        return {d["ports"][dpid] for _, _, d in self.classical.edges(dpid, data=True)}

    def edge_ports(self, dpid: int) -> set[int]:
        """Ports that are not (and were not, while up) switch links: where hosts may live."""
        return {p for p in self.switch_ports.get(dpid, ()) - self.link_ports(dpid)
                if (dpid, p) not in self.former_link_ports}

    def host_seen(self, mac: str, ip: str, dpid: int, port: int, now: float) -> bool:
        """Record a host's attachment point; ignored on switch-to-switch ports."""
        if port in self.link_ports(dpid) if dpid in self.classical else False:
            return False
        if (dpid, port) in self.former_link_ports:
            return False
        old = self.hosts.get(ip)
        if old is not None and (old.dpid, old.port) != (dpid, port) \
                and now - old.seen < HOST_MOVE_HOLD_S:
            return False
        self.hosts[ip] = HostInfo(mac, ip, dpid, port, now)
        changed = old is None or (old.mac, old.dpid, old.port) != (mac, dpid, port)
        self.classical_version += changed
        return changed
