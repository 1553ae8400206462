"""Topology loader: shipped files load, and each kind of broken file is rejected clearly."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from tests.helpers import ROOT

from mininet_topos import keyrate, topology
from mininet_topos.topology import TopologyError

GOOD = """
[network]
name = "t"

[[nodes]]
id = "A"

[[nodes]]
id = "B"
trust = 5
location = [1.5, 2]
role = "end"

[[nodes]]
id = "C"

[[links]]
a = "A"
b = "B"
length_km = 20

[[links]]
a = "B"
b = "C"
rate_bps = 1000

[[saes]]
id = "sae-a"
node = "A"
"""


def problems_of(text: str, tmp_path: Path, name: str = "bad.toml") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TopologyError) as info:
        topology.load(path)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def one_problem(text: str, tmp_path: Path) -> str:
    probs = problems_of(text, tmp_path)
    assert len(probs) == 1, probs
    assert probs[0].startswith(str(tmp_path / "bad.toml") + ": ")
    return probs[0]


@pytest.mark.parametrize("name", sorted(topology.shipped()))
def test_every_shipped_topology_loads_with_saes(name: str) -> None:
    topo = topology.load(name)
    assert topo.saes, f"{name} declares no SAEs"
    for part in ([topo.domain_view(d) for d in topo.domains] if topo.multi_domain else [topo]):
        assert nx.is_connected(part.qkd_graph()), part.name
    assert topo.source or topo.description
    for link in topo.links:
        assert link.rate_bps > 0
        if link.length_km is not None:
            assert link.rate_bps <= keyrate.plob_bound_bps(link.length_km)


def test_required_shipped_names_exist() -> None:
    names = set(topology.shipped())
    assert {"linear6", "metro8", "ring8", "grid3x3", "beijing_qman", "tokyo2010"} <= names
    assert topology.DEFAULT_TOPOLOGY == "metro8"


def test_good_file_typed_model(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(GOOD)
    topo = topology.load(str(path))
    assert topo.name == "t" and topo.path == path
    assert topo.nodes["B"].trust == 5 and topo.nodes["B"].location == (1.5, 2.0)
    assert topo.nodes["B"].role == "end" and topo.nodes["A"].trust == 3
    ab, bc = topo.links
    assert ab.id == "A-B" and ab.length_km == 20
    assert ab.rate_bps == pytest.approx(keyrate.rate_from_length(20))
    assert bc.rate_bps == 1000 and bc.length_km is None and bc.kms == "simulated"
    assert topo.saes["sae-a"].node == "A"
    g = topo.qkd_graph()
    assert g.number_of_edges() == 2 and g.nodes["B"]["trust"] == 5


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "mynet.toml"
    path.write_text(GOOD.replace('name = "t"', ""))
    assert topology.load(path).name == "mynet"


def test_metro8_is_a_demo_network() -> None:
    topo = topology.load("metro8")
    g = nx.Graph(topo.qkd_graph())
    a, b = topo.saes["sae-a"].node, topo.saes["sae-b"].node
    assert nx.shortest_path_length(g, a, b) >= 3
    assert len(list(nx.node_disjoint_paths(g, a, b))) >= 2
    assert len(nx.cycle_basis(g)) >= 2
    assert all(5 <= link.length_km <= 40 for link in topo.links)


def test_linear6_is_a_chain() -> None:
    topo = topology.load("linear6")
    g = nx.Graph(topo.qkd_graph())
    assert len(topo.nodes) == 6 and nx.is_tree(g) and max(d for _, d in g.degree) == 2
    ends = [n for n, d in g.degree if d == 1]
    assert {topo.saes[s].node for s in topo.saes} >= set(ends)


def test_unknown_spec() -> None:
    with pytest.raises(TopologyError) as info:
        topology.load("no-such-topology")
    assert "no-such-topology: topology: not a file" in info.value.problems[0]
    assert "metro8" in info.value.problems[0]


def test_mesh_spec() -> None:
    topo = topology.load("mesh:50:7")
    assert len(topo.nodes) == 50
    assert topology.load("mesh:50:7").links == topo.links
    with pytest.raises(TopologyError, match="mesh:x: topology"):
        topology.load("mesh:x")


def test_unknown_node_in_link_and_sae(tmp_path: Path) -> None:
    text = GOOD.replace('b = "C"\nrate_bps', 'b = "Q"\nrate_bps').replace('node = "A"', 'node = "Z"')
    probs = problems_of(text, tmp_path)
    assert any("link 2 (B-Q): b: unknown node 'Q'" in p for p in probs), probs
    assert any("sae 1 (sae-a): node: unknown node 'Z'" in p for p in probs), probs


def test_suggests_close_node_name(tmp_path: Path) -> None:
    text = GOOD.replace('node = "A"', 'node = "a"')
    assert "did you mean 'A'?" in one_problem(text, tmp_path)


def test_duplicate_ids(tmp_path: Path) -> None:
    text = GOOD + '\n[[nodes]]\nid = "A"\n\n[[links]]\na = "A"\nb = "B"\nrate_bps = 5\n' \
                  '\n[[saes]]\nid = "sae-a"\nnode = "B"\n'
    probs = problems_of(text, tmp_path)
    assert any("node 4 (A): id: duplicate node id 'A'" in p for p in probs), probs
    assert any("link 3 (A-B): id: duplicate link id 'A-B'; parallel links need distinct ids" in p
               for p in probs), probs
    assert any("sae 2 (sae-a): id: duplicate SAE id 'sae-a'" in p for p in probs), probs


def test_sae_ids_and_node_ids_cannot_collide(tmp_path: Path) -> None:
    # an SAE named like a node would get a certificate with that node's name
    assert one_problem(GOOD + '\n[[saes]]\nid = "B"\nnode = "C"\n', tmp_path) == \
        f"{tmp_path / 'bad.toml'}: sae 2 (B): id: 'B' is also a node id; SAE ids and node ids must differ"


@pytest.mark.parametrize("table", ["nodes", "saes"])
def test_names_the_network_certificates_use_are_reserved(tmp_path: Path, table: str) -> None:
    extra = '\n[[nodes]]\nid = "qusec"\n' if table == "nodes" else '\n[[saes]]\nid = "qusec"\nnode = "A"\n'
    probs = problems_of(GOOD + extra, tmp_path)
    assert any("id: 'qusec' is reserved" in p for p in probs), probs


def test_parallel_links_with_distinct_ids(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(GOOD + '\n[[links]]\nid = "A-B#2"\na = "A"\nb = "B"\nrate_bps = 5\n')
    topo = topology.load(path)
    assert [link.id for link in topo.links_of("A")] == ["A-B", "A-B#2"]
    assert topo.qkd_graph().number_of_edges("A", "B") == 2


@pytest.mark.parametrize("value", ["-5", "0"])
def test_non_positive_length(tmp_path: Path, value: str) -> None:
    p = one_problem(GOOD.replace("length_km = 20", f"length_km = {value}"), tmp_path)
    assert f"link 1 (A-B): length_km: must be positive, got {value}" in p


@pytest.mark.parametrize("value", ["-1", "0", "0.0"])
def test_non_positive_rate(tmp_path: Path, value: str) -> None:
    p = one_problem(GOOD.replace("rate_bps = 1000", f"rate_bps = {value}"), tmp_path)
    assert "link 2 (B-C): rate_bps: must be positive" in p


def test_rate_above_plob(tmp_path: Path) -> None:
    text = GOOD.replace("length_km = 20", "length_km = 100\nrate_bps = 2e7")
    p = one_problem(text, tmp_path)
    assert "link 1 (A-B): rate_bps: 2e+07 b/s is above the PLOB bound for 100 km" in p


def test_length_beyond_model_reach(tmp_path: Path) -> None:
    p = one_problem(GOOD.replace("length_km = 20", "length_km = 400"), tmp_path)
    assert "length_km: 400 km is beyond the key-rate model's reach" in p
    # an explicit (low) rate makes a long link valid
    path = tmp_path / "ok.toml"
    path.write_text(GOOD.replace("length_km = 20", "length_km = 400\nrate_bps = 0.5"))
    assert topology.load(path).links[0].rate_bps == 0.5


def test_missing_length_and_rate(tmp_path: Path) -> None:
    p = one_problem(GOOD.replace("rate_bps = 1000", ""), tmp_path)
    assert "link 2 (B-C): length_km/rate_bps: missing" in p


def test_self_loop(tmp_path: Path) -> None:
    p = one_problem(GOOD.replace('a = "B"\nb = "C"', 'a = "C"\nb = "C"')
                    + '\n[[links]]\na = "B"\nb = "C"\nrate_bps = 9\n', tmp_path)
    assert "link 2 (C-C): self-loop: both ends are 'C'" in p


def test_disconnected(tmp_path: Path) -> None:
    text = GOOD + '\n[[nodes]]\nid = "X"\n\n[[nodes]]\nid = "Y"\n\n[[links]]\na = "X"\nb = "Y"\nrate_bps = 9\n'
    p = one_problem(text, tmp_path)
    assert ": graph: QKD graph is disconnected: 2 components: {A, B, C}; {X, Y}" in p


def test_unknown_keys_suggest(tmp_path: Path) -> None:
    text = GOOD.replace("length_km = 20", "lenght_km = 20\nrate_bps = 5").replace(
        'trust = 5', 'trust = 5\ncolour = "red"') + "\n[extra]\nx = 1\n"
    probs = problems_of(text, tmp_path)
    assert any("link 1 (A-B): lenght_km: unknown key (did you mean 'length_km'?)" in p for p in probs)
    assert any("node 2 (B): colour: unknown key" in p for p in probs)
    assert any(": file: extra: unknown key" in p for p in probs)


def test_wrong_types(tmp_path: Path) -> None:
    text = (GOOD.replace('id = "C"', "id = 3").replace("length_km = 20", 'length_km = "20"')
            .replace("location = [1.5, 2]", 'location = "here"'))
    probs = problems_of(text, tmp_path)
    assert any("node 3: id: must be a string, got integer 3" in p for p in probs), probs
    assert any("link 1 (A-B): length_km: must be a number, got string '20'" in p for p in probs)
    assert any("node 2 (B): location: must be an array of two numbers" in p for p in probs)


def test_nodes_not_array_of_tables(tmp_path: Path) -> None:
    probs = problems_of('nodes = "A"\n', tmp_path)
    assert any(": nodes: must be an array of tables" in p for p in probs), probs


def test_missing_required(tmp_path: Path) -> None:
    text = GOOD.replace('a = "A"\nb = "B"', 'a = "A"').replace('node = "A"', "")
    probs = problems_of(text, tmp_path)
    assert any("link 1: b: missing (required)" in p for p in probs), probs
    assert any("sae 1 (sae-a): node: missing (required)" in p for p in probs), probs
    for text in ("[network]\n", "nodes = []\n"):
        assert problems_of(text, tmp_path) == [f"{tmp_path / 'bad.toml'}: nodes: missing: a topology "
                                               "needs at least one [[nodes]] entry"]


@pytest.mark.parametrize("value", ["0", "6", "true", '"high"', "2.5"])
def test_bad_trust(tmp_path: Path, value: str) -> None:
    p = one_problem(GOOD.replace("trust = 5", f"trust = {value}"), tmp_path)
    assert "node 2 (B): trust: must be an integer 1..5" in p


def test_bad_role_and_kms(tmp_path: Path) -> None:
    text = GOOD.replace('role = "end"', 'role = "boss"').replace(
        "rate_bps = 1000", 'rate_bps = 1000\nkms = "vendor"')
    probs = problems_of(text, tmp_path)
    assert any("node 2 (B): role: must be one of 'trusted', 'end'" in p for p in probs)
    assert any("link 2 (B-C): kms: must be one of 'simulated', 'etsi014'" in p for p in probs)


def test_etsi014_kms(tmp_path: Path) -> None:
    bad = GOOD.replace("rate_bps = 1000", 'rate_bps = 1000\nkms = "etsi014"')
    assert 'kms_url: missing (required when kms = "etsi014")' in one_problem(bad, tmp_path)
    path = tmp_path / "ok.toml"
    path.write_text(bad.replace('"etsi014"', '"etsi014"\nkms_url = "https://kms.example:8443"'))
    link = topology.load(path).links[1]
    assert link.kms == "etsi014" and link.kms_url == "https://kms.example:8443"
    plain = GOOD.replace("rate_bps = 1000", 'rate_bps = 1000\nkms_url = "https://x"')
    assert 'kms_url: only applies to kms = "etsi014"' in one_problem(plain, tmp_path)


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    p = one_problem(GOOD.replace('id = "C"', 'id = "C'), tmp_path)
    line = GOOD.splitlines().index('id = "C"') + 1
    assert f"bad.toml: line {line}: TOML syntax error" in p


def test_collects_all_problems(tmp_path: Path) -> None:
    text = GOOD.replace("trust = 5", "trust = 9").replace("length_km = 20", "length_km = -1") \
               .replace('node = "A"', 'node = "Nope"')
    assert len(problems_of(text, tmp_path)) == 3


def test_classical_links(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD + '\n[[classical_links]]\na = "A"\nb = "C"\nlatency_ms = 2.5\n'
                           '\n[[classical_links]]\na = "C"\nb = "B"\n')
    topo = topology.load(path)
    assert topo.classical[0].latency_ms == 2.5
    assert set(topo.classical_graph().edges) == {("A", "C"), ("B", "C")} or \
        {frozenset(e) for e in topo.classical_graph().edges} == {frozenset("AC"), frozenset("BC")}
    bad = GOOD + '\n[[classical_links]]\na = "A"\nb = "Q"\nlatency_ms = -1\n'
    probs = problems_of(bad, tmp_path)
    assert any("classical link 1 (A-Q): b: unknown node 'Q'" in p for p in probs), probs
    assert any("classical link 1 (A-Q): latency_ms: must not be negative" in p for p in probs)
    split = GOOD + '\n[[classical_links]]\na = "A"\nb = "B"\n'
    assert "classical_links: classical graph is disconnected" in one_problem(split, tmp_path)


def test_dumps_round_trip() -> None:
    for name in ("metro8", "linear6"):
        topo = topology.load(name)
        again = topology.loads(topology.dumps(topo), "<dump>")
        assert again.nodes == topo.nodes and again.saes == topo.saes
        assert [(x.id, x.a, x.b, x.length_km, x.kms) for x in again.links] == \
               [(x.id, x.a, x.b, x.length_km, x.kms) for x in topo.links]
        assert [x.rate_bps for x in again.links] == pytest.approx([x.rate_bps for x in topo.links])


def test_beijing_qman_matches_source_facts() -> None:
    topo = topology.load("beijing_qman")
    g = nx.Graph(topo.qkd_graph())
    assert len(topo.nodes) == 35 and len(topo.links) == 37
    assert sum(link.length_km for link in topo.links) == pytest.approx(245.367)
    assert min(link.length_km for link in topo.links) == 0.869
    assert max(link.length_km for link in topo.links) == 21.47
    assert len(nx.cycle_basis(g)) == 3
    ends = {n for n, node in topo.nodes.items() if node.role == "end"}
    assert ends == {f"EN{i}" for i in range(1, 19)}
    assert {s.node for s in topo.saes.values()} == ends
    assert "Nature 589, 214 (2021)" in topo.source and "QNET" in topo.source


def test_tokyo2010_parallel_links() -> None:
    topo = topology.load("tokyo2010")
    assert set(topo.nodes) == {"Koganei", "Otemachi", "Hakusan", "Hongo"}
    parallel = [link for link in topo.links if {link.a, link.b} == {"Koganei", "Otemachi"}]
    assert len(parallel) == 3 and len({link.id for link in parallel}) == 3
    rates = sorted(link.rate_bps for link in parallel)
    assert rates[0] == 2000 and 304000 in rates
    assert topo.qkd_graph().number_of_edges("Koganei", "Otemachi") == 3
    assert "Sasaki" in topo.source and "10387" in topo.source


@pytest.mark.parametrize("name,n,m", [("ring8", 8, 8), ("grid3x3", 9, 12)])
def test_ring_and_grid_shape(name: str, n: int, m: int) -> None:
    topo = topology.load(name)
    assert (len(topo.nodes), len(topo.links)) == (n, m)
    a, b = topo.saes["sae-a"].node, topo.saes["sae-b"].node
    assert topology.hops(topo, a, b) == 4
    assert len(list(nx.node_disjoint_paths(nx.Graph(topo.qkd_graph()), a, b))) == 2


def test_documented_example_loads() -> None:
    doc = (ROOT / "docs" / "topologies.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    topo = topology.loads(example, "docs/topologies.md")
    assert [link.id for link in topo.links] == ["A-B", "B-C#2"]
    assert topo.links[1].kms == "etsi014" and topo.classical[0].latency_ms == 2.5
