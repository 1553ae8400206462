"""The emulation plan of a topology (pure, no Mininet): switches with fixed DPIDs, vKMS and SAE
hosts with fixed data-plane and management addresses, switch links with their delays, and (a
multi-domain topology) the crossing links between domains: one direct host-to-host link per
interworking site (its two KMEs' ETSI GS QKD 020) and per PQC link (the WAN between its ends), on
a subnet of its own that no switch forwards.

``mininet_topos.launch.topos`` turns a plan into a Mininet ``Topo``; ``qkdnet clean`` finds our
bridges and veths by the names fixed here.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from mininet_topos.model import Topology

SWITCH_PREFIX = "qs"              # our OVS bridges are qs1, qs2, ...: `qkdnet clean` finds them by it
MGMT_BRIDGE = "qmgmt0"            # the management bridge (Linux bridge in the root namespace)
DATA_NET = ipaddress.ip_network("10.0.0.0/16")
SAE_BASE = ipaddress.ip_address("10.0.128.0")     # SAE hosts: 10.0.128.1, ...
MGMT_NET = ipaddress.ip_network("172.30.0.0/16")
MGMT_ROOT_IP = ipaddress.ip_address("172.30.0.1")  # QuSeC's address on the management network
MAX_NODES = 32000                 # node and SAE addresses must stay inside DATA_NET's halves
CROSSING_NET = ipaddress.ip_network("10.1.0.0/16")  # crossing link i: 10.1.i.1 and 10.1.i.2 (/24)
CROSSING_PREFIXLEN = 24
MAX_CROSSINGS = 255

_NAME_OK = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,9}$")
_SAE_NAME_OK = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,9}$")
# Words the Mininet CLI reads as commands: a host of that name could not be addressed.
_RESERVED = {"dpctl", "dump", "exit", "gterm", "help", "intfs", "iperf", "iperfudp", "link",
             "links", "net", "nodes", "noecho", "pingall", "pingallfull", "pingpair",
             "pingpairfull", "ports", "px", "py", "quit", "sh", "source", "switch", "time",
             "wait", "x", "xterm", "eof", "qkey", "qpaths", "qlinks", "qlink", "qpolicy", "qnodes",
             "lo"} | {f"c{i}" for i in range(10)}   # c0, c1, ...: the controllers (one per domain)


class TopoPlanError(ValueError):
    """The topology cannot be emulated (e.g. too many nodes for the address plan)."""


@dataclass(frozen=True)
class SwitchPlan:
    name: str
    node: str
    dpid: int


@dataclass(frozen=True)
class NodeHostPlan:
    name: str
    node: str
    switch: str
    ip: str          # data plane (ETSI 014/004 for SAEs, relay between agents)
    mgmt_ip: str     # management network (control stream to QuSeC)


@dataclass(frozen=True)
class SaeHostPlan:
    name: str
    sae: str
    node: str
    switch: str
    ip: str


@dataclass(frozen=True)
class LinkPlan:
    a: str           # switch names
    b: str
    node_a: str
    node_b: str
    delay_ms: float | None = None


@dataclass(frozen=True)
class CrossingPlan:
    """A link between two domains' node hosts that no switch forwards: an interworking site's
    (kind "etsi020", ``id`` the site) or a PQC link's WAN (kind "pqc", ``id`` the link)."""
    id: str
    kind: str
    node_a: str
    node_b: str
    host_a: str
    host_b: str
    ip_a: str
    ip_b: str
    prefixlen: int = CROSSING_PREFIXLEN

    def ip_of(self, node: str) -> str:
        return self.ip_a if node == self.node_a else self.ip_b


@dataclass
class EmulationPlan:
    """Everything a topology becomes in Mininet, with names and addresses fixed up front."""
    topology: str
    switches: list[SwitchPlan] = field(default_factory=list)
    node_hosts: list[NodeHostPlan] = field(default_factory=list)
    sae_hosts: list[SaeHostPlan] = field(default_factory=list)
    links: list[LinkPlan] = field(default_factory=list)
    crossings: list[CrossingPlan] = field(default_factory=list)
    prefixlen: int = DATA_NET.prefixlen
    mgmt_prefixlen: int = MGMT_NET.prefixlen
    mgmt_root_ip: str = str(MGMT_ROOT_IP)

    def switch_of(self, node: str) -> SwitchPlan:
        return next(s for s in self.switches if s.node == node)

    def node_host(self, node: str) -> NodeHostPlan:
        for h in self.node_hosts:
            if h.node == node:
                return h
        raise KeyError(f"no node {node!r} in {self.topology}")

    def sae_host(self, sae: str) -> SaeHostPlan:
        for h in self.sae_hosts:
            if h.sae == sae:
                return h
        raise KeyError(f"no SAE {sae!r} in {self.topology}")

    def crossing_ips(self, node: str) -> list[str]:
        """``node``'s addresses on crossing links (its site link, its PQC links)."""
        return [c.ip_of(node) for c in self.crossings if node in (c.node_a, c.node_b)]

    def part(self, nodes: set[str], name: str = "") -> "EmulationPlan":
        """The plan of some nodes (a domain): their switches, hosts and switch links, with the
        names and addresses of the whole plan; the crossings that touch them."""
        return EmulationPlan(
            name or self.topology, [s for s in self.switches if s.node in nodes],
            [h for h in self.node_hosts if h.node in nodes], [h for h in self.sae_hosts if h.node in nodes],
            [l for l in self.links if l.node_a in nodes and l.node_b in nodes],
            [c for c in self.crossings if c.node_a in nodes or c.node_b in nodes],
            self.prefixlen, self.mgmt_prefixlen, self.mgmt_root_ip)

    def names(self) -> set[str]:
        """Every name this plan gives Mininet: node and SAE hosts, switches, the management bridge
        (what a clean-up after a failure may remove)."""
        return {h.name for h in self.node_hosts} | {h.name for h in self.sae_hosts} | \
            {s.name for s in self.switches} | {MGMT_BRIDGE}

    def expected_switch_links(self) -> set[frozenset[int]]:
        """Switch adjacencies (pairs of DPIDs) LLDP discovery should find."""
        dpid = {s.name: s.dpid for s in self.switches}
        return {frozenset((dpid[l.a], dpid[l.b])) for l in self.links}


def _host_name(wanted: str, fallback: str, pattern: re.Pattern, taken: set[str]) -> str:
    ok = (pattern.match(wanted) and wanted.lower() not in _RESERVED
          and not wanted.startswith(SWITCH_PREFIX) and wanted not in taken)
    name = wanted if ok else fallback
    if name in taken:
        raise TopoPlanError(f"host name {name!r} is used twice")
    taken.add(name)
    return name


def plan(topology: Topology) -> EmulationPlan:
    """Switches, hosts and links of ``topology`` in Mininet (pure; no root needed).

    Hosts are named after their node or SAE id where that is a usable Mininet name
    (short, no CLI command), else ``nI`` / ``eJ``. Switch ``qsI`` has DPID I, in file order.
    """
    n_nodes, n_saes = len(topology.nodes), len(topology.saes)
    if n_nodes > MAX_NODES or n_saes > MAX_NODES:
        raise TopoPlanError(f"{topology.name}: {n_nodes} nodes / {n_saes} SAEs exceed the "
                            f"address plan ({MAX_NODES} each)")
    p = EmulationPlan(topology.name)
    taken: set[str] = set()
    sw_of: dict[str, str] = {}
    for i, node_id in enumerate(topology.nodes, start=1):
        sw = f"{SWITCH_PREFIX}{i}"
        sw_of[node_id] = sw
        taken.add(sw)
        p.switches.append(SwitchPlan(sw, node_id, i))
    for i, node_id in enumerate(topology.nodes, start=1):
        name = _host_name(node_id, f"n{i}", _NAME_OK, taken)
        p.node_hosts.append(NodeHostPlan(name, node_id, sw_of[node_id],
                                         str(DATA_NET.network_address + i),
                                         str(MGMT_ROOT_IP + i)))
    for j, sae in enumerate(topology.saes.values(), start=1):
        name = _host_name(sae.id, f"e{j}", _SAE_NAME_OK, taken)
        p.sae_hosts.append(SaeHostPlan(name, sae.id, sae.node, sw_of[sae.node], str(SAE_BASE + j)))
    g = topology.classical_graph()
    order = {n: i for i, n in enumerate(topology.nodes)}
    for a, b, data in sorted(g.edges(data=True), key=lambda e: sorted((order[e[0]], order[e[1]]))):
        if order[a] > order[b]:
            a, b = b, a
        p.links.append(LinkPlan(sw_of[a], sw_of[b], a, b, data.get("latency_ms")))
    p.crossings = _crossings(topology, {h.node: h.name for h in p.node_hosts})
    return p


def _crossings(topology: Topology, host_of: dict[str, str]) -> list[CrossingPlan]:
    ends = [(site.id, "etsi020", site.kmes) for site in topology.interworking]
    ends += [(pq.id, "pqc", (pq.a, pq.b)) for pq in topology.pqc_links]
    if len(ends) > MAX_CROSSINGS:
        raise TopoPlanError(f"{topology.name}: {len(ends)} interworking sites and PQC links exceed the "
                            f"address plan ({MAX_CROSSINGS})")
    wan = [n for pq in topology.pqc_links for n in (pq.a, pq.b)]
    twice = sorted({n for n in wan if wan.count(n) > 1})
    if twice:
        raise TopoPlanError(f"{topology.name}: node {twice[0]!r} ends more than one PQC link: Mininet gives "
                            "each end one WAN address; run it with --local")
    out = []
    for i, (cid, kind, nodes) in enumerate(ends, start=1):
        if len(nodes) != 2:
            raise TopoPlanError(f"{topology.name}: interworking site {cid!r} has {len(nodes)} KMEs: Mininet "
                                "emulates a site of two KMEs (one direct site link); run it with --local")
        net = CROSSING_NET.network_address + (i << 8)
        a, b = nodes
        out.append(CrossingPlan(cid, kind, a, b, host_of[a], host_of[b], str(net + 1), str(net + 2)))
    return out
