"""QuSeC's inventory from a topology: its nodes with their trust and SAEs, and hop latencies (the least
classical latency between a link's ends)."""
from __future__ import annotations

import pytest

from mininet_topos import topology
from mininet_topos.provision import inventory as provision
from quseccontroller import inventory

NODES = '[network]\nname = "t"\n\n' + "".join(f'[[nodes]]\nid = "{n}"\n\n' for n in "ABCD")
SAES = """
[[saes]]
id = "sae-a"
node = "A"

[[saes]]
id = "sae-a2"
node = "A"

[[saes]]
id = "sae-c"
node = "C"
"""
QKD = """
[[links]]
a = "A"
b = "B"
rate_bps = 1000

[[links]]
a = "A"
b = "D"
rate_bps = 1000

[[links]]
a = "B"
b = "C"
rate_bps = 1000

[[links]]
a = "C"
b = "D"
rate_bps = 1000

[[links]]
id = "C-D#2"
a = "C"
b = "D"
rate_bps = 1000
"""
CLASSICAL = """
[[classical_links]]
a = "A"
b = "B"
latency_ms = 5

[[classical_links]]
a = "B"
b = "C"

[[classical_links]]
a = "C"
b = "D"
latency_ms = 1

[[classical_links]]
a = "A"
b = "D"
latency_ms = 10

[[classical_links]]
a = "B"
b = "D"
latency_ms = 2.25
"""


def test_hop_latency_is_the_least_summed_classical_latency():
    topo = topology.loads(NODES + QKD + CLASSICAL, "t.toml")
    # A-D: the direct switch link takes 10 ms, A-B-C-D 5 + 0 + 1 (B-C has no latency_ms: 0).
    assert provision.hop_latencies(topo) == {"A-B": 5.0, "A-D": 6.0, "B-C": 0.0, "C-D": 1.0, "C-D#2": 1.0}
    inv = provision.build(topo)
    assert [(x.id, x.a, x.b, x.latency_ms) for x in inv.links] == [
        ("A-B", "A", "B", 5.0), ("A-D", "A", "D", 6.0), ("B-C", "B", "C", 0.0),
        ("C-D", "C", "D", 1.0), ("C-D#2", "C", "D", 1.0)]


def test_without_classical_links_every_hop_is_zero():
    topo = topology.loads(NODES + QKD, "t.toml")
    assert set(provision.hop_latencies(topo).values()) == {0.0}


def test_written_file_is_what_qusec_loads(tmp_path):
    topo = topology.loads(NODES + QKD + CLASSICAL, "t.toml")
    f = provision.write(topo, tmp_path / "inventory.toml")
    assert f.read_text().startswith("# QuSeC inventory of topology 't'")
    loaded = inventory.load(f)
    assert loaded.links == provision.build(topo).links and loaded.source == str(f)
    assert loaded.hop_latencies()["A-D"] == 6.0


def test_a_link_without_classical_route_is_refused():
    from mininet_topos.model import ClassicalLink
    topo = topology.loads(NODES + QKD + CLASSICAL, "t.toml")
    topo.classical = [ClassicalLink("A", "B", 1.0), ClassicalLink("C", "D", 1.0)]
    with pytest.raises(ValueError, match="QKD link A-D: no classical route from A to D"):
        provision.hop_latencies(topo)


def test_nodes_carry_their_trust_and_saes():
    text = NODES.replace('id = "B"\n', 'id = "B"\ntrust = 5\n') + QKD + SAES
    inv = provision.build(topology.loads(text, "t.toml"))
    assert [(n.id, n.trust, n.saes) for n in inv.nodes] == [
        ("A", 3, ("sae-a", "sae-a2")), ("B", 5, ()), ("C", 3, ("sae-c",)), ("D", 3, ())]
    assert inv.node_of_sae("sae-c") == "C"


def test_written_nodes_are_what_qusec_loads(tmp_path):
    topo = topology.loads(NODES + QKD + SAES, "t.toml")
    loaded = inventory.load(provision.write(topo, tmp_path / "inventory.toml"))
    assert loaded.nodes == provision.build(topo).nodes and loaded.node("A").saes == ("sae-a", "sae-a2")


def test_a_domains_inventory_holds_its_nodes_and_borders_only() -> None:
    import tomllib

    from mininet_topos import topology
    from mininet_topos.provision.inventory import build_domain
    from quseccontroller.abstract import Border
    from quseccontroller.inventory import dumps, parse
    topo = topology.load("beijing_shanghai3")
    inv = build_domain(topo, "trunk")
    assert inv.domain == "trunk" and inv.transit
    assert {n.id for n in inv.nodes} == {"T-BJ", "T-R1", "T-JN", "T-R2", "T-HF", "T-SH"}
    assert inv.borders == (Border("T-BJ", "bj-site", "etsi020", "beijing", "BJ-IW"),
                           Border("T-SH", "sh-site", "etsi020", "shanghai", "SH-IW"))
    bj = build_domain(topo, "beijing")
    assert [(b.node, b.kind, b.peer_node) for b in bj.borders] == [("BJ-IW", "etsi020", "T-BJ"),
                                                                   ("BJ3", "pqc", "SH3")]
    assert parse(tomllib.loads(dumps(bj)), "x") == parse(tomllib.loads(dumps(bj)), "x")
    assert parse(tomllib.loads(dumps(bj)), "x").borders == bj.borders
