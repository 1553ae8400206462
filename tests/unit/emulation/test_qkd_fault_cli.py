"""The checks of ``qlink A B down|up|qber X`` (qkdnet and the Mininet CLI): the fault words, the
names (node or SAE ids), the link between the two nodes, each refusal in one clear line."""
from __future__ import annotations

import pytest

from mininet_topos.cli import build_parser
from mininet_topos.cli.mncli import qlink_qkd
from mininet_topos.cli.qlink import QlinkError, describe, parse_fault, pick_links, resolve_node

DOC = {"nodes": {"A": {}, "B": {}, "C": {}}, "saes": {"sae-a": {"node": "A"}, "sae-b": {"node": "B"}}}
A_LINKS = [("A-B", "B"), ("A-B-2", "B"), ("A-C", "C")]


@pytest.mark.parametrize("words, want", [(["down"], ("down", 0.0)), (["up"], ("up", 0.0)),
                                         (["qber", "0.11"], ("qber", 0.11)), (["qber", "0"], ("qber", 0.0)),
                                         (["qber", "0.5"], ("qber", 0.5)), (["qber", "5%"], ("qber", 0.05))])
def test_fault_words(words, want):
    assert parse_fault(words) == pytest.approx(want)


@pytest.mark.parametrize("words, message", [
    ([], "the fault must be down, up or qber X, got 'nothing'"),
    (["off"], "the fault must be down, up or qber X, got 'off'"),
    (["down", "now"], "down takes no value"),
    (["qber"], "qber takes one value"),
    (["qber", "0.1", "0.2"], "qber takes one value"),
    (["qber", "high"], "QBER 'high' is not a number"),
    (["qber", "0.51"], "QBER 0.51 is outside 0..0.5"),
    (["qber", "-0.01"], "QBER -0.01 is outside 0..0.5"),
    (["qber", "nan"], "QBER nan is outside 0..0.5"),
])
def test_bad_fault_words_are_refused(words, message):
    with pytest.raises(QlinkError, match="^" + message.replace(".", r"\.")):
        parse_fault(words)


def test_names_are_nodes_or_saes():
    assert resolve_node(DOC, "B") == "B" and resolve_node(DOC, "sae-a") == "A"
    with pytest.raises(QlinkError, match="unknown node or SAE 'Z'; nodes: A, B, C"):
        resolve_node(DOC, "Z")


def test_the_links_between_two_nodes():
    assert pick_links(A_LINKS, "A", "B", None) == ["A-B", "A-B-2"]     # parallel links: all
    assert pick_links(A_LINKS, "A", "B", "A-B-2") == ["A-B-2"]
    with pytest.raises(QlinkError, match="nodes A and D are not neighbours .*A's QKD neighbours: B, C"):
        pick_links(A_LINKS, "A", "D", None)
    with pytest.raises(QlinkError, match="link 'A-C' does not join A and B; their links: A-B, A-B-2"):
        pick_links(A_LINKS, "A", "B", "A-C")
    with pytest.raises(QlinkError, match="both ends are node A"):
        pick_links(A_LINKS, "A", "A", None)


def test_the_parser_and_the_description():
    args = build_parser().parse_args(["qlink", "sae-a", "B", "qber", "0.2", "--link", "A-B"])
    assert (args.a, args.b, args.fault, args.link, args.end) == ("sae-a", "B", ["qber", "0.2"], "A-B", None)
    line = describe([{"node": "A", "link_id": "A-B", "peer_node": "B", "state": "FAULT_STATE_QBER",
                      "qber": 0.2, "alarm": "qber_above_threshold", "skr_bps": 0.0,
                      "nominal_skr_bps": 1e6}])
    assert line == "link A-B at A (toward B): qber 0.2: ALARM qber_above_threshold, no key"


def test_the_mininet_cli_takes_qkd_faults():
    assert qlink_qkd("A B qkd qber 0.2") == ("A", "B", ["qber", "0.2"], None)
    assert qlink_qkd("sae-a B qkd down --link A-B") == ("sae-a", "B", ["down"], "A-B")
    assert qlink_qkd("A B qkd").startswith("usage: qlink A B qkd down|up|qber X")
    assert qlink_qkd("A B qkd down --link").startswith("usage: qlink A B qkd")
    assert qlink_qkd("A B down") is None          # a switch link: qlink_target's
