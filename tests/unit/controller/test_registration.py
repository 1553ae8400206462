"""What a node may say about itself: Register and link reports against the inventory and its
certificate, link levels both ends must agree on, SAEs in path requests, who releases a path."""
from __future__ import annotations

from dataclasses import replace

import pytest

from tests.helpers.qusec_net import agents_for, core_with, inventory_for

from quseccontroller import registration
from quseccontroller.actions import PathRequest, Revoke
from quseccontroller.core import NotPathSource, QuSeCCore
from quseccontroller.registration import Refused
from quseccontroller.state import LEVEL_SLACK_BITS, REPORT_INTERVAL_S, AgentInfo, LinkState

EDGES = [("A", "B"), ("B", "C"), ("C", "D"), ("A", "E"), ("E", "D")]


def refused(core: QuSeCCore, info: AgentInfo, addresses=None) -> Refused:
    with pytest.raises(Refused) as err:
        core.agent_registered(info, 1.0, addresses)
    return err.value


def test_an_unknown_node_cannot_register():
    core, _ = core_with(EDGES, inventory=inventory_for(EDGES))
    err = refused(core, AgentInfo("sae-c", "127.0.0.1:7000", trust_level=5, saes=("sae-d",)))
    assert err.reason == "unknown_node" and "'sae-c' is not in QuSeC's inventory" in err.message
    assert "sae-c" not in core.state.agents and core.state.node_of_sae("sae-d") == "D"


def test_a_node_cannot_raise_its_own_trust_level():
    inv = inventory_for(EDGES, trust={"B": 2})
    core, agents = core_with(EDGES, inventory=inv, trust={"B": 2})
    err = refused(core, replace(agents["B"], trust_level=5))
    assert err.reason == "trust_level" and err.details == {"claimed": "5", "inventory": "2"}
    assert core.state.trust("B") == 2


def test_a_node_cannot_claim_another_nodes_sae():
    core, agents = core_with(EDGES, inventory=inventory_for(EDGES))
    err = refused(core, replace(agents["C"], saes=("sae-c", "sae-d")))
    assert err.reason == "sae" and "'sae-d' (of node 'D')" in err.message
    # The SAE still belongs where the inventory puts it, even after the attempt.
    d, _ = core.request_path(PathRequest("A", "", "sae-a", "sae-d"), 2.0)
    assert d.granted and d.paths[0][-1] == "D"
    # Fewer SAEs than the inventory gives is fine: QuSeC knows the others from the inventory.
    core.agent_registered(replace(agents["C"], saes=()), 3.0)
    assert core.state.node_of_sae("sae-c") == "C"


@pytest.mark.parametrize("link, text", [
    (LinkState("A-D", "D", 1e9, 10**12), "'A-D' is not in QuSeC's inventory"),
    (LinkState("B-C", "C", 1e5, 10**6), "joins B and C, not node 'A'"),
    (LinkState("A-B", "C", 1e5, 10**6), "leads to 'B', not 'C'"),
])
def test_a_node_cannot_register_links_the_inventory_does_not_give_it(link, text):
    core, agents = core_with(EDGES, inventory=inventory_for(EDGES))
    err = refused(core, replace(agents["A"], links=agents["A"].links + (link,)))
    assert err.reason == "link" and text in err.message and err.details == {"links": link.link_id}


def test_relay_address_and_data_ip_must_be_the_certificates():
    core, agents = core_with(EDGES, inventory=inventory_for(EDGES))
    a = agents["A"]                               # relay 10.0.0.1:7000, data IP 10.0.0.1
    core.agent_registered(a, 1.0, ("10.0.0.1", "192.168.0.1"))
    err = refused(core, replace(a, relay_addr="10.0.0.2:443"), ("10.0.0.1",))
    assert err.reason == "address" and err.details == {"field": "relay_address", "value": "10.0.0.2"}
    assert "(its addresses: 10.0.0.1)" in err.message
    err = refused(core, replace(a, data_ip="10.0.0.2"), ("10.0.0.1",))
    assert err.details["field"] == "data_ip"
    assert refused(core, replace(a, relay_addr="kms-a.example:7000"), ("10.0.0.1",)).reason == "address"
    # Without an inventory the addresses are still checked.
    plain = QuSeCCore()
    assert refused(plain, a, ("127.0.0.1",)).reason == "address"
    plain.agent_registered(replace(a, relay_addr="127.0.0.1:7000", data_ip=""), 1.0, ("127.0.0.1",))


def test_without_an_inventory_registrations_are_taken_as_they_come():
    core, agents = core_with(EDGES)
    core.agent_registered(AgentInfo("Z", "127.0.0.1:7001", trust_level=5, saes=("sae-z",),
                                    links=(LinkState("A-Z", "A", 1e5, 10**6),)), 1.0)
    assert core.state.trust("Z") == 5 and core.state.node_of_sae("sae-z") == "Z"


def test_registration_takes_trust_and_saes_from_the_inventory():
    info = agents_for(EDGES)["A"]
    inv = inventory_for(EDGES)
    assert registration.admit(replace(info, saes=()), inv).saes == ("sae-a",)
    assert registration.admit(info, None) is info


def test_reports_for_links_not_in_the_inventory_are_dropped():
    core, _ = core_with(EDGES, inventory=inventory_for(EDGES))
    kept, dropped = core.screen_report("A", [LinkState("A-B", "B", 1e5, 5), LinkState("A-D", "D", 1e9, 10**12)])
    assert [ls.link_id for ls in kept] == ["A-B"]
    assert [(r.link_id, r.reason) for r in dropped] == [("A-D", "link")]
    core.agent_report("A", [LinkState("A-D", "D", 1e9, 10**12)], 2.0)
    assert "A-D" not in core.state.links and core.counters["report_links_refused"] == 1


def test_inventory_nodes_and_links_exist_before_anyone_registers():
    core = QuSeCCore(inventory=inventory_for(EDGES, nodes=["Q"]))
    s = core.status()
    assert set(s["nodes"]) == set("ABCDEQ") and not s["nodes"]["A"]["online"]
    assert set(s["links"]) == {"A-B", "B-C", "C-D", "A-E", "E-D"}
    assert all(link["status"] == "OFF" for link in s["links"].values())
    d, _ = core.request_path(PathRequest("A", "D"), 1.0)
    assert d.refusal == "unknown_node" and "not registered" in d.reason


def test_a_link_reported_by_one_end_only_carries_no_path():
    core = QuSeCCore()
    agents = agents_for([("A", "B")])
    core.agent_registered(agents["A"], 0.0)
    core.agent_registered(replace(agents["B"], links=()), 0.0)
    assert core.state.links["A-B"].overall_status() == "OFF"
    assert core.request_path(PathRequest("A", "B"), 1.0)[0].refusal == "disconnected"
    core.agent_report("B", [LinkState("A-B", "A", 1e5, 10**6)], 2.0)
    assert core.request_path(PathRequest("A", "B"), 3.0)[0].granted


def test_a_node_cannot_claim_more_key_than_its_peer_sees():
    # A claims 10^9 bits for hops it starts; B sees 10^6 of A's direction: the link is disputed,
    # the path A-B-C-D moves to A-E-D, and the link comes back once the ends agree.
    core, _ = core_with(EDGES, policy=None)
    core.agent_report("A", [LinkState("A-E", "E", 1e5, 10)], 0.5)   # A-E: no key from A
    d, _ = core.request_path(PathRequest("A", "D"), 1.0)
    assert d.paths == [["A", "B", "C", "D"]]
    pid = d.path_ids[0]
    core.agent_report("B", [LinkState("A-B", "A", 1e5, 10**6, peer_stored_bits=10**6)], 2.0)
    acts = core.agent_report("A", [LinkState("A-B", "B", 1e5, 10**9)], 2.0)
    rec = core.state.links["A-B"]
    assert "A reports 1000000000 bits" in rec.disputed and "B sees 1000000" in rec.disputed
    assert not rec.usable() and core.status()["links"]["A-B"]["status"] == "OFF"
    assert core.status()["link_disputes"] == 1
    assert any(isinstance(a, Revoke) for a in acts) and pid not in core.paths   # no other path
    core.agent_report("A", [LinkState("A-B", "B", 1e5, 10**6)], 3.0)
    assert rec.usable() and not rec.disputed


def test_the_tolerance_covers_what_the_link_makes_and_uses_between_two_reports():
    core, _ = core_with([("A", "B")])
    view = 10**7
    # B reported 3 s before A; B's link makes 10^5 bit/s and uses 2 * 10^4 bit/s.
    core.agent_report("B", [LinkState("A-B", "A", 1e5, 10**7, 2e4, peer_stored_bits=view)], 7.0)
    tolerance = max(LEVEL_SLACK_BITS, 0.1 * view) + (1e5 + 2e4) * (3.0 + REPORT_INTERVAL_S)
    core.agent_report("A", [LinkState("A-B", "B", 1e5, int(view + tolerance) - 1)], 10.0)
    assert core.state.links["A-B"].usable()
    core.agent_report("A", [LinkState("A-B", "B", 1e5, int(view + tolerance) + 1)], 10.0)
    assert core.state.links["A-B"].disputed
    # A liar's own key rate does not widen the tolerance of its claim.
    core.agent_report("A", [LinkState("A-B", "B", 1e12, int(view + tolerance) + 1)], 10.0)
    assert core.state.links["A-B"].disputed and core.state.links["A-B"].skr_bps == 1e5


def test_a_peer_view_of_zero_is_unknown_and_checks_nothing():
    core, _ = core_with([("A", "B")], stored=10**9)   # agents_for reports no peer view
    assert core.state.links["A-B"].usable()


def test_unknown_source_or_destination_sae_is_refused():
    core, _ = core_with(EDGES, inventory=inventory_for(EDGES))
    d, _ = core.request_path(PathRequest("A", "D", "sae-x", "sae-d"), 1.0)
    assert (d.granted, d.refusal) == (False, "unknown_sae") and "source SAE 'sae-x'" in d.reason
    d, _ = core.request_path(PathRequest("A", "D", "sae-a", "sae-d", dst_saes=("sae-d", "sae-q")), 1.0)
    assert d.refusal == "unknown_sae" and "destination SAE 'sae-q'" in d.reason
    d, _ = core.request_path(PathRequest("A", "D", "sae-a", "sae-d", dst_saes=("sae-d",)), 1.0)
    assert d.granted
    plain, _ = core_with(EDGES)   # without an inventory: the SAEs the nodes registered
    assert plain.request_path(PathRequest("A", "D", "sae-x"), 1.0)[0].refusal == "unknown_sae"
    assert plain.request_path(PathRequest("A", "D"), 1.0)[0].granted   # a node's own path


def test_authorisations_carry_every_slave_sae_and_the_level():
    core, _ = core_with(EDGES, inventory=inventory_for(EDGES, nodes=()))
    d, acts = core.request_path(PathRequest("A", "D", "sae-a", "sae-d", dst_saes=("sae-d",)), 1.0)
    auths = [a.auth for a in acts if hasattr(a, "auth")]
    assert auths and all((x.src_sae, x.dst_saes, x.security_level) == ("sae-a", ("sae-d",), "qkd")
                         for x in auths)


def test_only_the_source_node_releases_a_path():
    core, _ = core_with(EDGES)
    d, _ = core.request_path(PathRequest("A", "D"), 1.0)
    pid = d.path_ids[0]
    with pytest.raises(NotPathSource, match="only its source node 'A'"):
        core.release_path(pid, 2.0, by="E")
    assert pid in core.paths
    assert core.release_path("no-such-path", 2.0, by="E") == []
    assert core.release_path(pid, 2.0, by="A") and pid not in core.paths


def test_a_register_without_a_link_forgets_that_end_of_it():
    # A Register lists all of a node's links: one it no longer lists is no longer reported by
    # it, and a link only one end reports carries no path (its paths move).
    core, agents = core_with(EDGES)
    d, _ = core.request_path(PathRequest("A", "D"), 1.0)
    assert d.paths == [["A", "E", "D"]]
    acts = core.agent_registered(replace(agents["E"], links=(agents["E"].links[0],)), 2.0)   # no E-D
    assert "E" not in core.state.links["E-D"].status and not core.state.links["E-D"].usable()
    assert core.paths[d.path_ids[0]].nodes == ["A", "B", "C", "D"]
    assert any(isinstance(a, Revoke) and a.node_id == "E" for a in acts)
