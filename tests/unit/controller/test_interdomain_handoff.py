"""Inter-domain paths, the controller's pure parts: when the gateway asks the parent, the handoff
it takes from the parent's chain, and what the core grants (and refuses) for a handoff."""
from __future__ import annotations

import dataclasses

import pytest

from quseccontroller import records
from quseccontroller.abstract import Border
from quseccontroller.actions import Handoff, PathRequest
from quseccontroller.gateway.control import handoff_of, handoff_wanted, parent_refusal
from quseccontroller.gateway.rpc import PathRefused
from quseccontroller.parent.chain import Chain, Crossing, Segment
from quseccontroller.proto import control_pb2
from tests.helpers.qusec_net import core_with, inventory_for

# domain "west": A - B - X, X is its KME at site s1 (peer KME Y of domain "east")
EDGES = [("A", "B"), ("B", "X")]
SITE = Border("X", "s1", "etsi020", "east", "Y")
HANDOFF = Handoff("s1", "etsi020", "east", "Y", "X")


def west():
    inv = dataclasses.replace(inventory_for(EDGES), domain="west", borders=(SITE,))
    core, _ = core_with(EDGES, inventory=inv)
    return core


def chain(*crossings: Crossing) -> Chain:
    return Chain("east", (Segment("west", "", "X"), Segment("east", "Y", "")), crossings, "qkd", 3.0)


# -- the gateway's decision ------------------------------------------------------------------
def test_the_parent_is_asked_only_for_an_sae_neither_the_agent_nor_the_domain_knows():
    foreign = control_pb2.PathRequest(src_node="A", dst_sae="sae-far")
    refused = {"granted": False, "refusal": "unknown_sae"}
    assert handoff_wanted(foreign, refused, has_parent=True)
    assert not handoff_wanted(foreign, refused, has_parent=False)          # no parent: stays refused
    assert not handoff_wanted(foreign, {"granted": True}, has_parent=True)
    assert not handoff_wanted(foreign, {"granted": False, "refusal": "no_key"}, has_parent=True)
    # the agent named the node: an ordinary request, whatever the app says
    named = control_pb2.PathRequest(src_node="A", dst_node="D", dst_sae="sae-far")
    assert not handoff_wanted(named, refused, has_parent=True)


def test_parent_refusals_map_to_what_the_master_gets():
    assert parent_refusal("unknown_sae") == "unknown_sae"              # no domain has it: 400
    assert parent_refusal("unavailable") == "parent_unavailable"       # the parent down: 503
    assert parent_refusal("deadline_exceeded") == "parent_unavailable"
    assert parent_refusal("no_route") == "no_chain"
    assert parent_refusal("domain_down") == "no_chain"


def test_the_handoff_is_the_chains_first_crossing_a_site_or_a_pqc_link():
    site = Crossing("s1", "etsi020", "west", "X", "east", "Y")
    assert handoff_of(chain(site)) == {"crossing": "s1", "kind": "etsi020", "peer_domain": "east",
                                       "peer_kme": "Y", "exit_node": "X"}
    assert handoff_of(chain(Crossing("wan", "pqc", "west", "B", "east", "Z"))) == {
        "crossing": "wan", "kind": "pqc", "peer_domain": "east", "peer_kme": "Z", "exit_node": "B"}
    with pytest.raises(PathRefused) as err:
        handoff_of(chain(Crossing("x", "carrier-pigeon", "west", "B", "east", "Z")))
    assert err.value.reason == "unsupported_crossing"
    with pytest.raises(PathRefused):
        handoff_of(chain())


def test_a_handoff_crosses_the_bridge_and_the_reply_carries_it():
    wire = {"src_node": "A", "dst_node": "X", "dst_sae": "sae-far", "handoff": records.handoff_to_wire(HANDOFF)}
    assert records.path_request_from_wire(wire).handoff == HANDOFF
    assert records.path_request_from_wire({"src_node": "A", "dst_sae": "sae-far"}).dst_node == ""
    reply = records.path_reply_proto({"paths": [], "handoff": records.handoff_to_wire(HANDOFF)})
    assert reply.handoff.peer_kme == "Y" and reply.handoff.exit_node == "X"


# -- the core -------------------------------------------------------------------------------
def test_a_handoff_path_ends_at_the_sites_kme_whose_authorisation_says_so():
    core = west()
    d, acts = core.request_path(PathRequest("A", "X", "sae-a", "sae-far", handoff=HANDOFF), 1.0)
    assert d.granted and d.paths == [["A", "B", "X"]], d.reason
    auths = {a.node_id: a.auth for a in acts if hasattr(a, "auth")}
    assert auths["X"].handoff == HANDOFF and auths["X"].dst_saes == ("sae-far",)
    assert auths["A"].handoff is None and auths["B"].handoff is None
    assert not any(a.foreign_src_sae for a in auths.values())
    msg = records.authorise_proto(records.auth_to_wire(auths["X"]))
    assert msg.authorise.handoff.crossing == "s1"
    assert not records.authorise_proto(records.auth_to_wire(auths["B"])).authorise.HasField("handoff")


@pytest.mark.parametrize("handoff, dst, dst_sae, why", [
    (dataclasses.replace(HANDOFF, exit_node="B"), "B", "sae-far", "not this domain's KME"),
    (HANDOFF, "B", "sae-far", "must end there"),
    (dataclasses.replace(HANDOFF, peer_kme="Z"), "X", "sae-far", "not this domain's KME"),
    (dataclasses.replace(HANDOFF, kind="pqc"), "X", "sae-far", "not this domain's KME"),
    (dataclasses.replace(HANDOFF, kind="bogus"), "X", "sae-far", "sites (etsi020) and PQC links"),
    (HANDOFF, "X", "sae-b", "is an SAE of this domain"),    # a key for our own SAE never leaves
])
def test_a_handoff_the_inventory_does_not_back_is_refused(handoff, dst, dst_sae, why):
    d, acts = west().request_path(PathRequest("A", dst, "sae-a", dst_sae, handoff=handoff), 1.0)
    assert not d.granted and d.refusal == "invalid_handoff" and why in d.reason and acts == []


def test_an_unknown_sae_without_a_node_is_unknown_sae():
    d, _ = west().request_path(PathRequest("A", "", "sae-a", "sae-far"), 1.0)
    assert not d.granted and d.refusal == "unknown_sae" and "sae-far" in d.reason


def test_only_a_sites_kme_may_relay_on_the_key_of_another_domains_sae():
    core = west()
    d, acts = core.request_path(PathRequest("X", "A", "sae-far", "sae-a"), 1.0)
    assert d.granted and d.paths == [["X", "B", "A"]], d.reason
    assert all(a.auth.foreign_src_sae for a in acts if hasattr(a, "auth"))   # the destination's word
    d, _ = core.request_path(PathRequest("B", "A", "sae-far", "sae-a"), 1.0)
    assert not d.granted and d.refusal == "unknown_sae"


# -- post-quantum links and a segment that starts at its exit -------------------------------
PQC = Border("B", "wan", "pqc", "east", "Z")
PQC_HANDOFF = Handoff("wan", "pqc", "east", "Z", "B")


def west_with_pqc(allow_pqc: bool):
    from quseccontroller import policy
    table = policy.parse({"default": {"action": "allow", "allow_pqc_fallback": allow_pqc}})
    inv = dataclasses.replace(inventory_for(EDGES), domain="west", borders=(SITE, PQC))
    core, _ = core_with(EDGES, policy=table, inventory=inv)
    return core


def test_a_key_over_a_pqc_link_needs_a_policy_that_allows_the_post_quantum_level():
    d, _ = west_with_pqc(False).request_path(PathRequest("A", "B", "sae-a", "sae-far", handoff=PQC_HANDOFF), 1.0)
    assert not d.granted and d.refusal == "policy_deny" and "allow_pqc_fallback" in d.reason, d.reason
    d, acts = west_with_pqc(True).request_path(PathRequest("A", "B", "sae-a", "sae-far", handoff=PQC_HANDOFF), 1.0)
    assert d.granted and d.paths == [["A", "B"]], d.reason
    assert {a.node_id: a.auth for a in acts if hasattr(a, "auth")}["B"].handoff == PQC_HANDOFF


def test_a_pqc_links_end_relays_on_keys_of_other_domains_but_never_sends_them_over_pqc_again():
    core = west_with_pqc(True)
    d, _ = core.request_path(PathRequest("B", "A", "sae-far", "sae-a"), 1.0)   # came in over "wan"
    assert d.granted and d.paths == [["B", "A"]], d.reason
    d, _ = core.request_path(PathRequest("X", "B", "sae-far", "sae-other", handoff=PQC_HANDOFF), 1.0)
    assert not d.granted and d.refusal == "invalid_handoff" and "does not go on over PQC" in d.reason


def test_a_key_starting_at_the_exit_kme_is_granted_an_empty_segment():
    d, acts = west().request_path(PathRequest("X", "X", "sae-x", "sae-far", handoff=HANDOFF), 1.0)
    assert d.granted and d.paths == [["X"]], d.reason
    auths = [a.auth for a in acts if hasattr(a, "auth")]
    assert [a.handoff for a in auths] == [HANDOFF] and not auths[0].next_hop
