"""Shared builders for QuSeC core tests: agents on a small QKD graph, switches on a ring."""
from __future__ import annotations

from quseccontroller.core import QuSeCCore
from quseccontroller.inventory import Inventory, InventoryLink, InventoryNode
from quseccontroller.state import AgentInfo, LinkState

from tests.helpers.fakeoftable import FakeNetwork

RELAY_PORT = 7000


def ip(i: int) -> str:
    return f"10.0.0.{i + 1}"


def mac_of(addr: str) -> str:
    """The MAC ``ring_switches`` gives the host with IPv4 ``addr``: 10.0.0.1 -> 00:00:00:00:00:01."""
    o = [int(x) for x in addr.split(".")]
    return f"00:00:00:00:{o[2]:02x}:{o[3]:02x}"


def agents_for(edges, rate=1e5, stored=10**6, trust=None, data_ip=True, port=RELAY_PORT):
    """AgentInfo per node for QKD links ``edges`` [(a, b), ...] (link id "a-b")."""
    links: dict[str, list[LinkState]] = {}
    for a, b in edges:
        lid = f"{a}-{b}"
        links.setdefault(a, []).append(LinkState(lid, b, rate, stored))
        links.setdefault(b, []).append(LinkState(lid, a, rate, stored))
    out = {}
    for i, n in enumerate(sorted(links)):
        out[n] = AgentInfo(n, f"{ip(i) if data_ip else '127.0.0.1'}:{port + (0 if data_ip else i)}",
                           data_ip=ip(i) if data_ip else "",
                           trust_level=(trust or {}).get(n, 3), links=tuple(links[n]),
                           saes=(f"sae-{n.lower()}",))
    return out


def inventory_for(edges, latency=None, trust=None, nodes=(), source="inventory.toml") -> Inventory:
    """The inventory of the network ``agents_for(edges)`` registers: every node (trust 3 unless
    ``trust`` says otherwise, SAE ``sae-<node>``), every link "a-b" (``latency`` {link id: ms});
    ``nodes``: more nodes without links."""
    names = sorted({n for e in edges for n in e} | set(nodes))
    return Inventory(tuple(InventoryLink(f"{a}-{b}", a, b, (latency or {}).get(f"{a}-{b}"))
                           for a, b in edges), source,
                     tuple(InventoryNode(n, (trust or {}).get(n, 3), (f"sae-{n.lower()}",))
                           for n in names))


def core_with(edges, policy=None, now=0.0, inventory=None, **kw) -> tuple[QuSeCCore, dict[str, AgentInfo]]:
    core = QuSeCCore(policy, inventory=inventory)
    agents = agents_for(edges, **kw)
    for info in agents.values():
        core.agent_registered(info, now)
    return core, agents


def ring_switches(core: QuSeCCore, agents: dict[str, AgentInfo], n: int, now: float = 0.0,
                  extra_hosts: dict[str, tuple[int, int]] | None = None) -> FakeNetwork:
    """Switches 1..n in a ring (port 2 clockwise, port 3 counter-clockwise); node i's host on
    switch (i mod n)+1 port 1; ``extra_hosts`` {ip: (dpid, port)} for non-vKMS hosts. Every
    host's MAC is ``mac_of(its IP)``."""
    wiring = {(d, 2): (d % n + 1, 3) for d in range(1, n + 1)}
    net = FakeNetwork(wiring)
    for d in range(1, n + 1):
        net.apply(core.switch_up(d, [1, 2, 3, 4], now))
    for (d, p), (d2, p2) in sorted(wiring.items()):
        net.apply(core.link_up((d, p), (d2, p2), now))
    for i, name in enumerate(sorted(agents)):
        info = agents[name]
        net.apply(core.host_seen(mac_of(info.data_ip), info.data_ip, i % n + 1, 1, now))
    for h, (d, p) in sorted((extra_hosts or {}).items()):
        net.apply(core.host_seen(mac_of(h), h, d, p, now))
    return net


def relay_pkt(src_ip: str, dst_ip: str, dst_port: int = RELAY_PORT, src_port: int = 40000,
              eth_src: str | None = None) -> dict:
    """A TCP segment from ``src_ip`` (sent by its host: ``eth_src`` defaults to ``mac_of``)."""
    return dict(eth_type=0x0800, ip_proto=6, ipv4_src=src_ip, ipv4_dst=dst_ip,
                tcp_src=src_port, tcp_dst=dst_port, eth_src=eth_src or mac_of(src_ip))


def arp_pkt(src_ip: str, target: str, op: int = 1, eth_src: str | None = None) -> dict:
    """An ARP request (``op`` 1) or reply (2) from the host ``src_ip`` about ``target``."""
    return dict(eth_type=0x0806, arp_op=op, arp_spa=src_ip, arp_tpa=target,
                eth_src=eth_src or mac_of(src_ip))
