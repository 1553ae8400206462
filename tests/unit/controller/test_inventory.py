"""QuSeC's inventory file: a good file loads, every bad entry is named, the writer round-trips."""
from __future__ import annotations

import pytest

from quseccontroller import inventory
from quseccontroller.inventory import Inventory, InventoryError, InventoryLink

GOOD = """
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


def test_dumps_reads_back():
    inv = inventory.parse({"links": [{"id": "A-B", "a": "A", "b": "B", "latency_ms": 3},
                                     {"id": 'x"y', "a": "Ä", "b": "B"}]}, "x.toml")
    text = inventory.dumps(inv, comment="made by a test\nsecond line")
    assert text.startswith("# made by a test\n# second line\n\n[[links]]\n")
    assert "latency_ms = 3.0\n" in text
    import tomllib
    assert inventory.parse(tomllib.loads(text), "x.toml") == inv


def one_problem(data) -> str:
    with pytest.raises(InventoryError) as err:
        inventory.parse(data, "inv.toml")
    assert len(err.value.problems) == 1, err.value.problems
    return err.value.problems[0]


LINK = {"id": "A-B", "a": "A", "b": "B", "latency_ms": 1.0}


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
    assert one_problem({"links": [first, bad]}) == problem


def test_bad_file_level_problems():
    assert one_problem({"link": []}) == "inv.toml: top level: link: unknown field (did you mean 'links'?)"
    assert one_problem({"links": {"id": "A-B"}}).startswith(
        "inv.toml: links: must be an array of tables ([[links]])")
    assert one_problem({"links": [LINK, "A-B"]}) == "inv.toml: links[2]: must be a table, got 'A-B'"
    assert one_problem({"links": [LINK, dict(LINK, a="C")]}) == \
        "inv.toml: links[2] (A-B): id: 'A-B' already used by links[1]"


def test_every_problem_at_once_and_file_errors(tmp_path):
    with pytest.raises(InventoryError) as err:
        inventory.parse({"links": [dict(LINK, latency_ms="x"), {"a": "A"}], "nodes": []}, "inv.toml")
    assert err.value.problems == [
        "inv.toml: top level: nodes: unknown field (one of links)",
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
