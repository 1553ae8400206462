"""Flow planning: host-port ARP filtering, loop-free ARP/IPv4 forwarding, relay-port lockdown, and
per-path relay flows."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import networkx as nx

from quseccontroller.ofmsgs import (CONTROLLER, ETH_ARP, ETH_IPV4, IPPROTO_TCP, PRIORITY_ARP_BOUND,
                                    PRIORITY_ARP_FLOOD, PRIORITY_ARP_GUARD, PRIORITY_INGRESS_MISS,
                                    PRIORITY_LEARN, PRIORITY_MISS, PRIORITY_RELAY, PRIORITY_RELAY_DROP,
                                    PRIORITY_UNICAST, TABLE_FORWARD, TABLE_INGRESS, FlowSpec, spec)
from quseccontroller.state import HostInfo, NetworkState


def bfs_parents(g: nx.Graph, root) -> dict:
    """Deterministic BFS tree toward ``root``: node -> next node on its way to root."""
    parent = {root: None}
    queue = deque([root])
    adj = g._adj   # networkx's own dict-of-dicts: this runs once per switch per topology change
    while queue:
        u = queue.popleft()
        for v in sorted(adj[u]):
            if v not in parent:
                parent[v] = u
                queue.append(v)
    return parent


class Routes:
    """Shortest-path trees of one version of the classical graph, computed once per root."""

    def __init__(self, g: nx.Graph) -> None:
        self.g = g
        self._trees: dict = {}

    def toward(self, root) -> dict:
        tree = self._trees.get(root)
        if tree is None:
            tree = self._trees[root] = bfs_parents(self.g, root)
        return tree


def spanning_tree_ports(g: nx.Graph) -> dict[int, set[int]]:
    """Ports on a deterministic spanning forest (BFS from the smallest dpid of each component)."""
    ports: dict[int, set[int]] = {d: set() for d in g}
    seen: set = set()
    for root in sorted(g):
        if root in seen:
            continue
        parent = bfs_parents(g, root)
        seen |= set(parent)
        for child, up in parent.items():
            if up is not None:
                p = g.edges[child, up]["ports"]
                ports[child].add(p[child])
                ports[up].add(p[up])
    return ports


def _port_toward(g: nx.Graph, dpid, nxt) -> int:
    return g.edges[dpid, nxt]["ports"][dpid]


def relay_drop(ip: str, port: int) -> FlowSpec:
    """The drop of connections to one node's relay port (``ip``: its data IP) that no authorised
    path's flow lets through, on every switch while the node has a live control stream: only
    connections to that node's relay port are dropped (a node's relay port says nothing about
    anyone else's traffic, and the drop goes when the node does). No drop on tcp_src: a relay
    service never answers a SYN it did not get, and a relay port bound to an ephemeral number
    must not cut other hosts' connections that happen to use it as source."""
    return spec(PRIORITY_RELAY_DROP, (), eth_type=ETH_IPV4, ip_proto=IPPROTO_TCP, ipv4_dst=ip, tcp_dst=port)


def switch_flows(state: NetworkState, dpid: int, tree_ports: set[int],
                 bindings: frozenset[tuple[int, str, str]]) -> list[FlowSpec]:
    """One switch's own base flows: the ARP filter of its host ports, table-miss to controller
    and ARP flooding (the relay drops are ``relay_drop``'s, one per node).

    ``bindings``: (port, MAC, IP)
    of the hosts QuSeC learned on this switch: ARP from such a port passes the ingress table
    only with that MAC and IP (one port may hold several), so a host cannot answer for, or
    announce, another's address.

    ARP from a spanning-tree port or a port where a host was seen floods to the spanning-tree
    ports and to every port that is not a switch link (edge ports), so a host that never spoke
    still hears who-has for it. Packets from an edge port where no host was seen yet go to the
    controller first (learning; the app re-injects them): before LLDP has found every link such
    a port may be a switch link, and flooding from it could loop. ARP from a link off the tree,
    or from a port LLDP once found a link on (until the port goes down), is dropped. So the flood graph is the spanning tree plus leaves: loop-free."""
    links = state.link_ports(dpid)
    edge = state.edge_ports(dpid)
    out = [spec(PRIORITY_INGRESS_MISS, table=TABLE_INGRESS, goto=TABLE_FORWARD)]
    for port in sorted({p for p, _, _ in bindings} & edge):
        out.append(spec(PRIORITY_ARP_GUARD, (), table=TABLE_INGRESS, in_port=port, eth_type=ETH_ARP))
    for port, mac, ip in sorted(bindings):
        if port in edge:
            out.append(spec(PRIORITY_ARP_BOUND, table=TABLE_INGRESS, goto=TABLE_FORWARD, in_port=port,
                            eth_type=ETH_ARP, eth_src=mac, arp_spa=ip))
    out.append(spec(PRIORITY_MISS, (CONTROLLER,)))
    host_ports = {p for p, _, _ in bindings}
    flood = tree_ports | edge
    for port in sorted(tree_ports | (host_ports & edge)):
        out.append(spec(PRIORITY_ARP_FLOOD, tuple(sorted(flood - {port})), in_port=port, eth_type=ETH_ARP))
    for port in sorted(edge - host_ports - tree_ports):
        out.append(spec(PRIORITY_LEARN, (CONTROLLER,), in_port=port))
    for port in sorted((state.switch_ports.get(dpid, set()) | links) - edge - tree_ports):
        out.append(spec(PRIORITY_ARP_FLOOD, (), in_port=port, eth_type=ETH_ARP))
    return out


def route_ports(g: nx.Graph, routes: Routes, root: int) -> tuple[tuple[int, int | None], ...]:
    """The tree toward switch ``root`` as (switch, out-port) pairs (None at the root itself):
    what the routes toward a host attached to ``root`` depend on besides its port."""
    return tuple(sorted((dpid, None if up is None else _port_toward(g, dpid, up))
                        for dpid, up in routes.toward(root).items()))


def host_flows(state: NetworkState, h: HostInfo, routes: Routes) -> dict[int, list[FlowSpec]]:
    """Unicast IPv4 and ARP toward one host, on every switch, along its shortest-path tree."""
    g = state.classical
    out: dict[int, list[FlowSpec]] = {}
    if h.dpid not in g:
        return out
    for dpid, up in routes.toward(h.dpid).items():
        port = h.port if up is None else _port_toward(g, dpid, up)
        out[dpid] = [spec(PRIORITY_UNICAST, (port,), eth_type=ETH_IPV4, ipv4_dst=h.ip),
                     spec(PRIORITY_UNICAST, (port,), eth_type=ETH_ARP, arp_tpa=h.ip)]
    return out


def host_bindings(state: NetworkState) -> dict[int, frozenset[tuple[int, str, str]]]:
    """Per switch: (port, MAC, IP) of every host learned on it."""
    out: dict[int, set[tuple[int, str, str]]] = {d: set() for d in state.classical}
    for h in state.hosts.values():
        if h.dpid in out:
            out[h.dpid].add((h.port, h.mac.lower(), h.ip))
    return {d: frozenset(b) for d, b in out.items()}


@dataclass(frozen=True)
class Hop:
    """One relay hop a -> b on the classical network: a connects to b's relay port."""
    src_ip: str
    dst_ip: str
    dst_port: int


def switch_route(g: nx.Graph, a: HostInfo, b: HostInfo, routes: Routes | None = None,
                 ) -> list[tuple[int, int, int]] | None:
    """(dpid, port toward a, port toward b) for every switch between hosts a and b."""
    if a.dpid not in g or b.dpid not in g:
        return None
    parent = (routes or Routes(g)).toward(b.dpid)
    if a.dpid not in parent:
        return None
    route, dpid, back = [], a.dpid, a.port
    while True:
        up = parent[dpid]
        fwd = b.port if up is None else _port_toward(g, dpid, up)
        route.append((dpid, back, fwd))
        if up is None:
            return route
        back = _port_toward(g, up, dpid)
        dpid = up


def relay_flows(state: NetworkState, hops: list[Hop], cookie: int, hard_timeout: int,
                routes: Routes | None = None) -> tuple[dict[int, list[FlowSpec]], list[Hop]]:
    """Flows letting each hop's relay connection through (both directions), and the hops that
    cannot be planned yet (host attachment unknown or no switch route)."""
    out: dict[int, list[FlowSpec]] = {}
    missing: list[Hop] = []
    for hop in hops:
        a, b = state.hosts.get(hop.src_ip), state.hosts.get(hop.dst_ip)
        route = switch_route(state.classical, a, b, routes) if a and b else None
        if route is None:
            missing.append(hop)
            continue
        # Each direction matches the port it must arrive on (the sender's host port on its own
        # switch, the inter-switch port toward the sender on transit switches) and the sender's
        # MAC as QuSeC learned it. Addresses alone are forgeable by any host sharing a switch
        # with a path node, and a port alone by another device behind the same port.
        for dpid, toward_a, toward_b in route:
            out.setdefault(dpid, []).extend((
                spec(PRIORITY_RELAY, (toward_b,), cookie, hard_timeout, hard_timeout,
                     in_port=toward_a, eth_type=ETH_IPV4, ip_proto=IPPROTO_TCP, eth_src=a.mac.lower(),
                     ipv4_src=hop.src_ip, ipv4_dst=hop.dst_ip, tcp_dst=hop.dst_port),
                spec(PRIORITY_RELAY, (toward_a,), cookie, hard_timeout, hard_timeout,
                     in_port=toward_b, eth_type=ETH_IPV4, ip_proto=IPPROTO_TCP, eth_src=b.mac.lower(),
                     ipv4_src=hop.dst_ip, ipv4_dst=hop.src_ip, tcp_src=hop.dst_port)))
    return out, missing
