"""Shared builders for QuSeC core tests: agents on a small QKD graph, switches on a ring."""
from __future__ import annotations

from quseccontroller.core import QuSeCCore
from quseccontroller.state import AgentInfo, LinkState

from tests.helpers.fakeoftable import FakeNetwork

RELAY_PORT = 7000


def ip(i: int) -> str:
    return f"10.0.0.{i + 1}"


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


def core_with(edges, policy=None, now=0.0, inventory=None, **kw) -> tuple[QuSeCCore, dict[str, AgentInfo]]:
    core = QuSeCCore(policy, inventory=inventory)
    agents = agents_for(edges, **kw)
    for info in agents.values():
        core.agent_registered(info, now)
    return core, agents


def ring_switches(core: QuSeCCore, agents: dict[str, AgentInfo], n: int, now: float = 0.0,
                  extra_hosts: dict[str, tuple[int, int]] | None = None) -> FakeNetwork:
    """Switches 1..n in a ring (port 2 clockwise, port 3 counter-clockwise); node i's host on
    switch (i mod n)+1 port 1; ``extra_hosts`` {ip: (dpid, port)} for non-vKMS hosts."""
    wiring = {(d, 2): (d % n + 1, 3) for d in range(1, n + 1)}
    net = FakeNetwork(wiring)
    for d in range(1, n + 1):
        net.apply(core.switch_up(d, [1, 2, 3, 4], now))
    for (d, p), (d2, p2) in sorted(wiring.items()):
        net.apply(core.link_up((d, p), (d2, p2), now))
    for i, name in enumerate(sorted(agents)):
        info = agents[name]
        net.apply(core.host_seen(f"00:00:00:00:00:{i + 1:02x}", info.data_ip, i % n + 1, 1, now))
    for k, (h, (d, p)) in enumerate(sorted((extra_hosts or {}).items())):
        net.apply(core.host_seen(f"00:00:00:00:01:{k + 1:02x}", h, d, p, now))
    return net


def relay_pkt(src_ip: str, dst_ip: str, dst_port: int = RELAY_PORT, src_port: int = 40000) -> dict:
    return dict(eth_type=0x0800, ip_proto=6, ipv4_src=src_ip, ipv4_dst=dst_ip,
                tcp_src=src_port, tcp_dst=dst_port)
