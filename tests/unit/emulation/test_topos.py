"""Mininet topologies from QKD topology files: the right switches, hosts, links and addresses."""
from __future__ import annotations

import ipaddress

import pytest

from mininet_topos import topology
from mininet_topos.model import ClassicalLink, Node, QkdLink, Sae, Topology
from mininet_topos.launch.plan import MGMT_BRIDGE, TopoPlanError, plan
from mininet_topos.launch.topos import QkdTopo


def small(classical=()) -> Topology:
    nodes = {n: Node(n) for n in ("A", "B", "C", "py", "Very_long_node_name")}
    links = [QkdLink("A-B", "A", "B", 1e6), QkdLink("B-C", "B", "C", 1e6),
             QkdLink("B-C#2", "B", "C", 1e6), QkdLink("C-py", "C", "py", 1e6),
             QkdLink("py-V", "py", "Very_long_node_name", 1e6)]
    saes = {"sae-a": Sae("sae-a", "A"), "an-sae-with-a-long-id": Sae("an-sae-with-a-long-id", "C")}
    return Topology("small", nodes, links, saes, list(classical))


def test_metro8_plan_has_a_switch_and_host_per_node_and_links_follow_the_fibre():
    topo = topology.load("metro8")
    p = plan(topo)
    assert [(s.name, s.node, s.dpid) for s in p.switches] == [
        (f"qs{i}", n, i) for i, n in enumerate(topo.nodes, start=1)]
    assert [h.name for h in p.node_hosts] == list(topo.nodes)        # A..H are fine host names
    assert {h.sae: h.node for h in p.sae_hosts} == {s.id: s.node for s in topo.saes.values()}
    assert {frozenset((l.node_a, l.node_b)) for l in p.links} == \
        {frozenset((l.a, l.b)) for l in topo.links}
    assert len(p.links) == 11
    ips = [h.ip for h in p.node_hosts] + [h.ip for h in p.sae_hosts]
    assert len(set(ips)) == len(ips)
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.0.0.0/16") for ip in ips)
    mgmt = [h.mgmt_ip for h in p.node_hosts]
    assert len(set(mgmt)) == 8 and p.mgmt_root_ip not in mgmt
    assert p.switch_of("H").node == "H" and p.switch_of("H").dpid == 8
    assert frozenset((p.switch_of("A").dpid, p.switch_of("B").dpid)) in p.expected_switch_links()


def test_unusable_names_fall_back_and_parallel_qkd_links_share_one_switch_link():
    p = plan(small())
    names = {h.node: h.name for h in p.node_hosts}
    assert names["A"] == "A"
    assert names["py"] == "n4"                       # a Mininet CLI command
    assert names["Very_long_node_name"] == "n5"      # too long for interface names
    assert {h.sae: h.name for h in p.sae_hosts} == {"sae-a": "sae-a", "an-sae-with-a-long-id": "e2"}
    # B-C has two QKD links (like Tokyo's Koganei-Otemachi) but one classical link.
    assert [(l.node_a, l.node_b) for l in p.links] == [("A", "B"), ("B", "C"), ("C", "py"),
                                                       ("py", "Very_long_node_name")]


def test_explicit_classical_links_replace_the_fibre_graph():
    p = plan(small(classical=[ClassicalLink("A", "C", latency_ms=2.5), ClassicalLink("C", "B"),
                              ClassicalLink("C", "py"), ClassicalLink("A", "Very_long_node_name")]))
    assert {(l.node_a, l.node_b, l.delay_ms) for l in p.links} == {
        ("A", "C", 2.5), ("B", "C", None), ("C", "py", None), ("A", "Very_long_node_name", None)}


def test_mininet_topo_wires_node_hosts_on_port_1_and_management_on_its_own_bridge():
    topo = topology.load("metro8")
    p = plan(topo)
    mt = QkdTopo(p)
    assert sorted(mt.switches()) == sorted([s.name for s in p.switches] + [MGMT_BRIDGE])
    assert sorted(mt.hosts()) == sorted([h.name for h in p.node_hosts] + [h.name for h in p.sae_hosts])
    for h in p.node_hosts:
        assert mt.port(h.name, h.switch) == (0, 1)            # eth0 <-> switch port 1
        assert mt.port(h.name, MGMT_BRIDGE)[0] == 1           # eth1 on the management bridge
        assert mt.linkInfo(h.name, MGMT_BRIDGE)["params1"]["ip"] == f"{h.mgmt_ip}/16"
        assert mt.nodeInfo(h.name)["ip"] == f"{h.ip}/16"
    for h in p.sae_hosts:
        assert mt.port(h.name, h.switch)[0] == 0
        assert MGMT_BRIDGE not in mt.g[h.name]                 # SAEs only see the data plane
    switch_links = [(a, b) for a, b in mt.links() if a.startswith("qs") and b.startswith("qs")]
    assert len(switch_links) == len(p.links)
    # Without the management network, the management bridge and its links are absent.
    bare = QkdTopo(p, mgmt=False)
    assert MGMT_BRIDGE not in bare.switches()
    assert len(bare.links()) == len(p.node_hosts) + len(p.sae_hosts) + len(p.links)


def test_beijing_qman_plan_covers_35_nodes():
    p = plan(topology.load("beijing_qman"))
    assert len(p.switches) == 35 and len(p.node_hosts) == 35
    assert p.node_host("Beijing_Backbone").name == "n1"
    assert len(p.expected_switch_links()) == len(p.links)
    with pytest.raises(KeyError, match="no SAE 'nope'"):
        p.sae_host("nope")


def test_address_plan_limit_is_a_clear_error():
    nodes = {f"N{i}": Node(f"N{i}") for i in range(32001)}
    with pytest.raises(TopoPlanError, match="32001 nodes"):
        plan(Topology("huge", nodes, []))
