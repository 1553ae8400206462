"""QuSeC's inventory file: a good file loads, every bad entry is named, the writer round-trips."""
from __future__ import annotations

import pytest

from quseccontroller import inventory
from quseccontroller.inventory import Inventory, InventoryError, InventoryLink, InventoryNode

GOOD = """
[[nodes]]
id = "A"
trust = 4
saes = ["sae-a", "sae-a2"]

[[nodes]]
id = "B"

[[nodes]]
id = "C"
saes = ["sae-c"]

[[nodes]]
id = "D"
trust = 1

[[links]]
id = "A-B"
a = "A"
b = "B"
latency_ms = 2.5

[[links]]
id = "B-C#2"
a = "B"
b = "C"
latency_ms = 0

[[links]]
id = "C-D"
a = "C"
b = "D"
"""


def test_good_file(tmp_path):
    f = tmp_path / "inventory.toml"
    f.write_text(GOOD)
    inv = inventory.load(f)
    assert inv.source == str(f)
    assert inv.links == (InventoryLink("A-B", "A", "B", 2.5), InventoryLink("B-C#2", "B", "C", 0.0),
                         InventoryLink("C-D", "C", "D", None))
    assert inv.link("B-C#2").latency_ms == 0.0 and inv.link("nope") is None
    # A link without latency_ms is not in the latencies: it costs the default hop latency.
    assert inv.hop_latencies() == {"A-B": 2.5, "B-C#2": 0.0}
    assert inventory.parse({}, "empty.toml") == Inventory((), "empty.toml")
    assert inv.nodes == (InventoryNode("A", 4, ("sae-a", "sae-a2")), InventoryNode("B", 3, ()),
                         InventoryNode("C", 3, ("sae-c",)), InventoryNode("D", 1, ()))
    assert inv.node("B").trust == 3 and inv.node("Z") is None
    assert inv.node_of_sae("sae-a2") == "A" and inv.node_of_sae("sae-b") is None
    assert inv.link("A-B").peer("A") == "B" and inv.link("A-B").peer("C") is None


def test_dumps_reads_back():
    inv = inventory.parse({"nodes": [{"id": "A", "trust": 5, "saes": ["sae-a", 's"q']}, {"id": "B"},
                                     {"id": "Ä"}],
                           "links": [{"id": "A-B", "a": "A", "b": "B", "latency_ms": 3},
                                     {"id": 'x"y', "a": "Ä", "b": "B"}]}, "x.toml")
    text = inventory.dumps(inv, comment="made by a test\nsecond line")
    assert text.startswith("# made by a test\n# second line\n\n[[nodes]]\nid = \"A\"\ntrust = 5\n")
    assert "latency_ms = 3.0\n" in text
    import tomllib
    assert inventory.parse(tomllib.loads(text), "x.toml") == inv


def one_problem(data) -> str:
    with pytest.raises(InventoryError) as err:
        inventory.parse(data, "inv.toml")
    assert len(err.value.problems) == 1, err.value.problems
    return err.value.problems[0]


LINK = {"id": "A-B", "a": "A", "b": "B", "latency_ms": 1.0}
NODES = [{"id": n} for n in ("A", "B", "C", "X", "Y")]


@pytest.mark.parametrize("change,problem", [
    ({"latency_ms": "x"}, "inv.toml: links[2] (A-B): latency_ms: must be a number >= 0, got 'x'"),
    ({"latency_ms": -1}, "inv.toml: links[2] (A-B): latency_ms: must be a number >= 0, got -1"),
    ({"latency_ms": True}, "inv.toml: links[2] (A-B): latency_ms: must be a number >= 0, got True"),
    ({"latency_ms": float("nan")}, "inv.toml: links[2] (A-B): latency_ms: must be a number >= 0, got nan"),
    ({"latncy_ms": 2}, "inv.toml: links[2] (A-B): latncy_ms: unknown field (did you mean 'latency_ms'?)"),
    ({"colour": "red"}, "inv.toml: links[2] (A-B): colour: unknown field (one of id, a, b, latency_ms)"),
    ({"id": None}, "inv.toml: links[2]: id: missing (required)"),
    ({"id": 7}, "inv.toml: links[2]: id: must be a non-empty string, got 7"),
    ({"a": None}, "inv.toml: links[2] (A-B): a: missing (required)"),
    ({"b": ""}, "inv.toml: links[2] (A-B): b: must be a non-empty string, got ''"),
    ({"b": "A"}, "inv.toml: links[2] (A-B): b: same node as a ('A'): a QKD link joins two nodes"),
])
def test_each_bad_link_entry_is_named(change, problem):
    first = {"id": "X-Y", "a": "X", "b": "Y"}
    bad = {k: v for k, v in {**LINK, **change}.items() if v is not None}
    assert one_problem({"nodes": NODES, "links": [first, bad]}) == problem


def test_bad_file_level_problems():
    assert one_problem({"link": []}) == "inv.toml: top level: link: unknown field (did you mean 'links'?)"
    assert one_problem({"links": {"id": "A-B"}}).startswith(
        "inv.toml: links: must be an array of tables ([[links]])")
    assert one_problem({"nodes": NODES, "links": [LINK, "A-B"]}) == \
        "inv.toml: links[2]: must be a table, got 'A-B'"
    assert one_problem({"nodes": NODES, "links": [LINK, dict(LINK, a="C")]}) == \
        "inv.toml: links[2] (A-B): id: 'A-B' already used by links[1]"


def test_every_problem_at_once_and_file_errors(tmp_path):
    with pytest.raises(InventoryError) as err:
        inventory.parse({"links": [dict(LINK, latency_ms="x"), {"a": "A"}], "nodes": NODES,
                         "colour": []}, "inv.toml")
    assert err.value.problems == [
        "inv.toml: top level: colour: unknown field (one of nodes, links, domain, borders)",
        "inv.toml: links[1] (A-B): latency_ms: must be a number >= 0, got 'x'",
        "inv.toml: links[2]: id: missing (required)",
        "inv.toml: links[2]: b: missing (required)",
    ]
    assert str(err.value).count("\n") == 3
    with pytest.raises(InventoryError, match="cannot read"):
        inventory.load(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[links]\n")
    with pytest.raises(InventoryError, match="bad.toml: TOML syntax"):
        inventory.load(tmp_path / "bad.toml")


@pytest.mark.parametrize("nodes,problem", [
    ([{"id": "A"}, {"id": "A"}], "inv.toml: nodes[2] (A): id: 'A' already used by nodes[1]"),
    ([{"id": ""}], "inv.toml: nodes[1]: id: must be a non-empty string, got ''"),
    ([{"trust": 3}], "inv.toml: nodes[1]: id: missing (required)"),
    ([{"id": "A", "trust": 0}], "inv.toml: nodes[1] (A): trust: must be an integer 1..5, got 0"),
    ([{"id": "A", "trust": True}], "inv.toml: nodes[1] (A): trust: must be an integer 1..5, got True"),
    ([{"id": "A", "saes": "sae-a"}],
     "inv.toml: nodes[1] (A): saes: must be a list of non-empty strings, got 'sae-a'"),
    ([{"id": "A", "saes": ["s"]}, {"id": "B", "saes": ["s"]}],
     "inv.toml: nodes[2] (B): saes: 's' is already an SAE of node 'A'"),
    ([{"id": "A", "saes": ["B"]}, {"id": "B"}],
     "inv.toml: nodes[1] (A): saes: 'B' is also a node id (SAE ids and node ids must differ)"),
    ([{"id": "A", "sae": []}], "inv.toml: nodes[1] (A): sae: unknown field (did you mean 'saes'?)"),
    ("A", "inv.toml: nodes: must be an array of tables ([[nodes]]), got 'A'"),
])
def test_each_bad_node_entry_is_named(nodes, problem):
    assert one_problem({"nodes": nodes}) == problem


def test_a_link_joins_two_nodes_of_the_inventory():
    # QuSeC takes no link to a node it was not told of: an inventory of links alone lets no
    # node join, and says so.
    assert one_problem({"nodes": [{"id": "A"}], "links": [LINK]}) == \
        "inv.toml: links[1] (A-B): b: 'B' is not a node of the inventory (add it to [[nodes]])"


def test_a_domain_and_its_borders() -> None:
    from quseccontroller.abstract import Border
    from quseccontroller.inventory import dumps, parse
    data = {"domain": {"id": "beijing", "transit": False},
            "nodes": [{"id": "BJ1"}, {"id": "BJ-IW"}],
            "borders": [{"node": "BJ-IW", "crossing": "bj-site", "kind": "etsi020", "peer_domain": "trunk",
                         "peer_node": "T-BJ"}]}
    inv = parse(data, "inv.toml")
    assert (inv.domain, inv.transit) == ("beijing", False)
    assert inv.borders == (Border("BJ-IW", "bj-site", "etsi020", "trunk", "T-BJ"),)
    import tomllib
    assert parse(tomllib.loads(dumps(inv)), "again") == parse(data, "again")


def test_bad_borders_are_named() -> None:
    from quseccontroller.inventory import InventoryError, parse
    data = {"nodes": [{"id": "BJ1"}],
            "borders": [{"node": "BJ9", "crossing": "s", "kind": "etsi020", "peer_domain": "t", "peer_node": "X"},
                        {"node": "BJ1", "crossing": "s", "kind": "wormhole", "peer_domain": "t", "peer_node": "X"},
                        {"node": "BJ1", "crossing": "s", "kind": "pqc", "peer_domain": "", "peer_node": "X",
                         "colour": 1}]}
    with pytest.raises(InventoryError) as info:
        parse(data, "inv.toml")
    assert info.value.problems == [
        "inv.toml: borders: a network with borders is a domain: give [domain] id",
        "inv.toml: borders[1]: node: 'BJ9' is not a node of the inventory",
        "inv.toml: borders[2]: kind: must be one of etsi020, pqc, got 'wormhole'",
        "inv.toml: borders[3]: colour: unknown field (one of node, crossing, kind, peer_domain, peer_node)",
        "inv.toml: borders[3]: peer_domain: must be a non-empty string, got ''",
    ]
    with pytest.raises(InventoryError) as info:
        parse({"domain": {"id": "d", "transit": "yes", "name": "x"}}, "inv.toml")
    assert info.value.problems == ["inv.toml: domain: name: unknown field (one of id, transit)",
                                   "inv.toml: domain: transit: must be true or false, got 'yes'"]
