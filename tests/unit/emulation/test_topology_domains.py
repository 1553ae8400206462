"""Domains in topology files: networks, interworking sites, post-quantum links, and every way
to get them wrong named by file and entry."""
from __future__ import annotations

import argparse
from pathlib import Path

import networkx as nx
import pytest

from mininet_topos import topology
from mininet_topos.cli import up
from mininet_topos.topology import TopologyError

TWO = """
[network]
name = "two"

[[domains]]
id = "north"

[[domains]]
id = "south"

[[nodes]]
id = "A"
domain = "north"

[[nodes]]
id = "N-IW"
domain = "north"

[[nodes]]
id = "S-IW"
domain = "south"

[[nodes]]
id = "B"
domain = "south"

[[links]]
a = "A"
b = "N-IW"
length_km = 10

[[links]]
a = "S-IW"
b = "B"
length_km = 10

[[interworking]]
id = "site1"
kmes = ["N-IW", "S-IW"]

[[saes]]
id = "sae-a"
node = "A"

[[saes]]
id = "sae-b"
node = "B"
"""


def problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TopologyError) as info:
        topology.load(path)
    for p in info.value.problems:
        assert p.startswith(f"{path}: "), p
    return info.value.problems


def one(text: str, tmp_path: Path) -> str:
    probs = problems(text, tmp_path)
    assert len(probs) == 1, probs
    return probs[0]


def test_two_domain_file_model() -> None:
    topo = topology.loads(TWO, "two.toml")
    assert topo.multi_domain and list(topo.domains) == ["north", "south"]
    assert topo.nodes["A"].domain == "north" and topo.nodes["B"].domain == "south"
    assert topo.site_of("S-IW").id == "site1" and topo.site_of("A") is None
    north = topo.domain_view("north")
    assert set(north.nodes) == {"A", "N-IW"} and list(north.saes) == ["sae-a"]
    assert [lk.id for lk in north.links] == ["A-N-IW"] and not north.multi_domain
    dg = topo.domain_graph()
    (u, v, data), = dg.edges(data=True)
    assert {u, v} == {"north", "south"} and data["kind"] == "etsi020"
    assert data["ends"] == {"north": "N-IW", "south": "S-IW"}
    assert "2 domains, 1 interworking site, 0 PQC links" in topology.summary(topo)


def test_shipped_three_domain_topology() -> None:
    topo = topology.load("beijing_shanghai3")
    assert list(topo.domains) == ["beijing", "trunk", "shanghai"]
    assert [s.id for s in topo.interworking] == ["bj-site", "sh-site"]
    assert [(p.a, p.b) for p in topo.pqc_links] == [("BJ3", "SH3")]
    dg = topo.domain_graph()
    kinds = sorted(d["kind"] for _u, _v, d in dg.edges(data=True))
    assert kinds == ["etsi020", "etsi020", "pqc"]
    # the WAN link is the backup: without the Shanghai site the domains stay joined
    assert nx.is_connected(nx.Graph(dg))
    dg.remove_edges_from([(u, v, k) for u, v, k, d in dg.edges(keys=True, data=True) if d.get("site") == "sh-site"])
    assert nx.has_path(dg, "beijing", "shanghai")
    for dom in topo.domains:
        assert nx.is_connected(topo.domain_view(dom).qkd_graph())
    # no QKD link leaves its domain; the QKD graph as a whole does not join them
    assert all(topo.nodes[lk.a].domain == topo.nodes[lk.b].domain for lk in topo.links)
    assert not nx.is_connected(topo.qkd_graph())


def test_round_trip_keeps_domains() -> None:
    topo = topology.load("beijing_shanghai3")
    again = topology.loads(topology.dumps(topo), "<dump>")
    assert again.domains == topo.domains and again.interworking == topo.interworking
    assert again.pqc_links == topo.pqc_links and again.nodes == topo.nodes


def test_node_without_domain(tmp_path: Path) -> None:
    text = TWO.replace('id = "A"\ndomain = "north"', 'id = "A"')
    assert one(text, tmp_path).endswith("node 1 (A): domain: missing (required)")


def test_unknown_domain_suggests(tmp_path: Path) -> None:
    text = TWO.replace('id = "A"\ndomain = "north"', 'id = "A"\ndomain = "nort"')
    msg = one(text, tmp_path)
    assert "node 1 (A): domain: unknown domain 'nort' (did you mean 'north'?)" in msg
    assert "declared: north, south" in msg


def test_domain_without_domains_table(tmp_path: Path) -> None:
    text = '[[nodes]]\nid = "A"\ndomain = "x"\n[[nodes]]\nid = "B"\n[[links]]\na = "A"\nb = "B"\nlength_km = 5\n'
    assert "node 1 (A): domain: 'x' but the file declares no [[domains]]" in one(text, tmp_path)


def test_single_domain_declared(tmp_path: Path) -> None:
    text = ('[[domains]]\nid = "x"\n[[nodes]]\nid = "A"\ndomain = "x"\n[[nodes]]\nid = "B"\ndomain = "x"\n'
            '[[links]]\na = "A"\nb = "B"\nlength_km = 5\n')
    assert "domains: one domain declared" in one(text, tmp_path)


def test_qkd_link_across_domains(tmp_path: Path) -> None:
    text = TWO + '\n[[links]]\na = "A"\nb = "B"\nlength_km = 10\n'
    msg = one(text, tmp_path)
    assert "link 3 (A-B): a, b: 'A' is in domain 'north' and 'B' in 'south'" in msg
    assert "[[interworking]]" in msg and "[[pqc_links]]" in msg


def test_interworking_kmes_in_one_domain(tmp_path: Path) -> None:
    text = TWO.replace('kmes = ["N-IW", "S-IW"]', 'kmes = ["N-IW", "A"]')
    probs = problems(text, tmp_path)
    assert any("interworking 1 (site1): kmes: 'N-IW' and 'A' are both in domain 'north'" in p for p in probs)


def test_interworking_unknown_kme_and_shape(tmp_path: Path) -> None:
    probs = problems(TWO.replace('kmes = ["N-IW", "S-IW"]', 'kmes = ["N-IW", "S-lW"]'), tmp_path)
    assert any("kmes: unknown node 'S-lW' (did you mean 'S-IW'?)" in p for p in probs)
    msg = one(TWO.replace('kmes = ["N-IW", "S-IW"]', 'kmes = "N-IW"'), tmp_path)
    assert "interworking 1 (site1): kmes: must be an array of two or more node ids" in msg


def test_kme_in_two_sites(tmp_path: Path) -> None:
    text = TWO + '\n[[interworking]]\nid = "site2"\nkmes = ["A", "S-IW"]\n'
    assert "interworking 2 (site2): kmes: 'S-IW' is already a KME of interworking site 'site1'" in \
        one(text, tmp_path)


def test_site_id_clashes_with_node(tmp_path: Path) -> None:
    text = TWO.replace('id = "site1"', 'id = "A"')
    assert "interworking 1 (A): id: 'A' is already a node id" in one(text, tmp_path)


def test_interworking_needs_domains(tmp_path: Path) -> None:
    text = ('[[nodes]]\nid = "A"\n[[nodes]]\nid = "B"\n[[links]]\na = "A"\nb = "B"\nlength_km = 5\n'
            '[[interworking]]\nid = "s"\nkmes = ["A", "B"]\n')
    assert "interworking 1 (s): an interworking site joins domains" in one(text, tmp_path)


def test_pqc_link(tmp_path: Path) -> None:
    text = TWO.replace('[[interworking]]\nid = "site1"\nkmes = ["N-IW", "S-IW"]\n',
                       '[[pqc_links]]\na = "A"\nb = "B"\n')
    topo = topology.loads(text, "pqc.toml")
    (u, v, d), = topo.domain_graph().edges(data=True)
    assert d["kind"] == "pqc" and d["ends"] == {"north": "A", "south": "B"}
    # a PQC link is not a QKD link: no key source, no QKD graph edge
    assert all(lk.id != "A-B" for lk in topo.links) and not topo.qkd_graph().has_edge("A", "B")


def test_pqc_link_inside_a_domain(tmp_path: Path) -> None:
    text = TWO + '\n[[pqc_links]]\na = "A"\nb = "N-IW"\n'
    assert "pqc link 1 (A-N-IW): a, b: both ends are in domain 'north'" in one(text, tmp_path)


def test_pqc_link_id_taken_by_a_qkd_link(tmp_path: Path) -> None:
    text = TWO + '\n[[pqc_links]]\nid = "A-N-IW"\na = "A"\nb = "B"\n'
    assert "pqc link 1 (A-N-IW): id: duplicate link id 'A-N-IW'" in one(text, tmp_path)


def test_classical_link_between_domains(tmp_path: Path) -> None:
    ok = topology.loads(TWO + '\n[[classical_links]]\na = "N-IW"\nb = "S-IW"\n'
                              '[[classical_links]]\na = "A"\nb = "N-IW"\n'
                              '[[classical_links]]\na = "S-IW"\nb = "B"\n', "ok.toml")
    assert len(ok.classical) == 3
    text = TWO + '\n[[classical_links]]\na = "A"\nb = "B"\n'
    assert "classical link 1 (A-B): a, b: 'A' (north) and 'B' (south) are in different domains" in \
        one(text, tmp_path)


def test_domain_disconnected_inside(tmp_path: Path) -> None:
    text = TWO.replace('[[links]]\na = "A"\nb = "N-IW"\nlength_km = 10\n', '')
    assert "domain north: domain north's QKD graph is disconnected" in one(text, tmp_path)


def test_domains_not_joined(tmp_path: Path) -> None:
    text = TWO.replace('[[interworking]]\nid = "site1"\nkmes = ["N-IW", "S-IW"]\n', '')
    assert "domains: domain graph" in one(text, tmp_path) and "disconnected" in one(text, tmp_path)


def test_empty_domain(tmp_path: Path) -> None:
    text = TWO.replace('[[domains]]\nid = "south"\n', '[[domains]]\nid = "south"\n[[domains]]\nid = "east"\n')
    assert "domain east: has no nodes" in one(text, tmp_path)


def test_up_runs_every_domain_or_one_domain() -> None:
    topo = topology.load("beijing_shanghai3")
    net, probs = up.one_network(topo, None, "beijing_shanghai3")   # every domain in one Mininet
    assert net is topo and not probs
    net, probs = up.one_network(topo, None, "beijing_shanghai3", local=True)
    assert net is topo and not probs
    net, probs = up.one_network(topo, "trunk", "beijing_shanghai3")
    assert not probs and set(net.nodes) == {"T-BJ", "T-R1", "T-JN", "T-R2", "T-HF", "T-SH"}
    assert net.name == "beijing_shanghai3-trunk" and list(net.saes) == ["sae-jn"]
    _net, probs = up.one_network(topo, "mars", "x.toml")
    assert probs == ["x.toml: --domain mars: unknown domain; known: beijing, trunk, shanghai"]
    _net, probs = up.one_network(topology.load("metro8"), "north", "metro8")
    assert probs == ["metro8: --domain north: the topology has no [[domains]]"]
    topo_args = argparse.Namespace(topology="beijing_shanghai3", policy=None, domain="beijing")
    net, probs = up.check_inputs(topo_args)
    assert not probs and set(net.nodes) == {"BJ1", "BJ2", "BJ3", "BJ-IW"}


def test_demo_on_a_multi_domain_file_needs_a_pair_across_domains(capsys: pytest.CaptureFixture) -> None:
    from dataclasses import replace

    from mininet_topos.cli import demo
    args = argparse.Namespace(local=True, json=False, keys=1, state_dir=None)
    topo = topology.load("beijing_shanghai3")
    alone = replace(topo, saes={k: v for k, v in topo.saes.items() if k.startswith("sae-bj")})
    assert demo.run_domains(args, alone, 0.0) == 1
    assert "no SAE pair in different domains" in capsys.readouterr().err
