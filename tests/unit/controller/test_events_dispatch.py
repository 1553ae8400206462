"""The app's dispatch feeds the event log where the core decides: grants and refusals,
registrations (taken and refused), QKD links changing, reroutes (moved and revoked), agents
gone; and the gateway's notes are checked before they are logged."""
from __future__ import annotations

import pytest

from quseccontroller import records
from quseccontroller.bridge import BridgeError
from quseccontroller.core import QuSeCCore
from quseccontroller.dispatch import BridgeDispatch
from quseccontroller.events import EventLog
from quseccontroller.policy import parse
from quseccontroller.proto import control_pb2
from tests.helpers.qusec_net import inventory_for

SQUARE = [("A", "B"), ("B", "C"), ("A", "D"), ("D", "C")]
ACTIVE = control_pb2.LINK_STATUS_ACTIVE


class RecordingSender:
    """Stands in for the OpenFlow send engine (no switches here): keeps what it was given."""

    def __init__(self) -> None:
        self.actions: list = []

    def execute(self, actions, **_kw):
        self.actions += list(actions or [])
        return 0, []


def links_of(node: str, edges=SQUARE, status=ACTIVE) -> list[control_pb2.QkdLinkState]:
    return [control_pb2.QkdLinkState(link_id=f"{a}-{b}", peer_node=b if a == node else a,
                                     skr_bps=1e5, stored_bits=10**6, peer_stored_bits=10**6,
                                     status=status)
            for a, b in edges if node in (a, b)]


def register(d: BridgeDispatch, node: str, i: int, edges=SQUARE) -> dict:
    reg = control_pb2.Register(node_id=node, relay_addr=f"10.0.0.{i}:7000", data_ip=f"10.0.0.{i}",
                               trust_level=3, links=links_of(node, edges),
                               saes=[f"sae-{node.lower()}"])
    return d.handle("register", records.register_to_wire(reg))


def kinds(log: EventLog, after: int = 0) -> list[str]:
    return [e["kind"] for e in log.since(after)["events"]]


@pytest.fixture
def square():
    log = EventLog()
    core = QuSeCCore(inventory=inventory_for(SQUARE))
    d = BridgeDispatch(core, RecordingSender(), lambda: {}, log)
    for i, n in enumerate("ABCD", start=1):
        register(d, n, i)
    return d, log


def test_registrations_and_links_becoming_usable_are_events(square):
    d, log = square
    assert kinds(log).count("agent_registered") == 4
    ups = [e for e in log.since(0)["events"] if e["kind"] == "qkd_link_up"]
    assert sorted(e["link"] for e in ups) == ["A-B", "A-D", "B-C", "D-C"]
    assert all(e["status"] == "ACTIVE" for e in ups)


def test_a_refused_registration_is_an_event_and_still_refused(square):
    d, log = square
    seq = log.seq
    with pytest.raises(BridgeError):
        register(d, "Z", 9, [("Z", "A")])          # not in the inventory
    (e,) = log.since(seq)["events"]
    assert e["kind"] == "registration_refused" and e["node"] == "Z" and e["reason"]


def test_grant_refusal_reroute_and_gone(square):
    d, log = square
    d.core.policy = parse({"default": {"action": "allow", "paths": 1},
                           "rules": [{"name": "not-to-b", "match": {"dst_node": "B"},
                                      "action": "deny"}]}, "p.toml")
    granted = d.handle("request_path", {"src_node": "A", "dst_node": "C", "src_sae": "sae-a",
                                        "dst_sae": "sae-c"})
    assert granted["granted"]
    pid = granted["paths"][0]["path_id"]
    nodes = [h["node_id"] for h in granted["paths"][0]["hops"]]
    refused = d.handle("request_path", {"src_node": "D", "dst_node": "B"})
    assert not refused["granted"]
    g, r = [e for e in log.since(0)["events"] if e["kind"].startswith("path_")]
    assert g["kind"] == "path_granted" and g["paths"] == [nodes] and g["path_ids"] == [pid]
    assert g["src_sae"] == "sae-a" and g["rule"] == "default"
    assert r["kind"] == "path_refused" and r["reason"] == "policy_deny" and r["rule"] == "not-to-b"
    # the relay node of the path reports its link OFF: the path moves to the other side
    relay = nodes[1]
    seq = log.seq
    off = [records.link_to_wire(x) for x in links_of(relay, status=control_pb2.LINK_STATUS_OFF)]
    d.handle("report", records.report_to_wire(relay, off))
    moved = [e for e in log.since(seq)["events"] if e["kind"] == "reroute"]
    assert len(moved) == 1 and moved[0]["path_id"] == pid and moved[0]["result"] == "moved"
    assert moved[0]["nodes"][1] != relay
    assert {e["link"] for e in log.since(seq)["events"] if e["kind"] == "qkd_link_down"} == \
        {f"{a}-{b}" for a, b in SQUARE if relay in (a, b)}
    # the new relay leaves: no path is left, the path is revoked
    seq = log.seq
    d.handle("gone", {"node_id": moved[0]["nodes"][1]})
    after = log.since(seq)["events"]
    assert after[0]["kind"] == "agent_left"
    revoked = [e for e in after if e["kind"] == "reroute"]
    assert len(revoked) == 1 and revoked[0]["result"] == "revoked"
    assert "rerouting failed" in revoked[0]["reason"]
    assert not any(k.startswith("key") for e in log.since(0)["events"] for k in e)


def test_events_op_and_gateway_notes_are_checked(square):
    d, log = square
    seq = log.seq
    got = d.handle("note", {"kind": "registration_refused",
                            "fields": {"node": "B", "reason": "node_id_mismatch", "message": "m"}})
    assert got["seq"] == seq + 1
    e = d.handle("events", {"since": seq})["events"][0]
    assert e["source"] == "gateway" and e["reason"] == "node_id_mismatch"
    for bad in ({"kind": "path_granted", "fields": {}},            # the app decides grants
                {"kind": "path_refused", "fields": {"x": {"nested": 1}}},
                {"kind": "path_refused", "fields": {"key_id": "k"}},
                {"kind": "path_refused", "fields": []}):
        with pytest.raises(BridgeError) as err:
            d.handle("note", bad)
        assert err.value.code == "invalid"
    for bad in ({"since": "x"}, {"since": -1}, {"limit": -2}):
        with pytest.raises(BridgeError):
            d.handle("events", bad)
    assert log.seq == seq + 1
    assert d.handle("events", {"since": 0, "limit": 2})["events"][-1]["seq"] == 2


def test_a_move_that_keeps_every_old_node_is_a_reroute_event():
    # A-B-C, with a detour B-E-F-C: B-C off moves the path to A-B-E-F-C, which drops no node
    edges = [("A", "B"), ("B", "C"), ("B", "E"), ("E", "F"), ("F", "C")]
    log = EventLog()
    d = BridgeDispatch(QuSeCCore(inventory=inventory_for(edges)), RecordingSender(), lambda: {}, log)
    for i, n in enumerate("ABCEF", start=1):
        register(d, n, i, edges)
    granted = d.handle("request_path", {"src_node": "A", "dst_node": "C", "src_sae": "sae-a",
                                        "dst_sae": "sae-c"})
    pid = granted["paths"][0]["path_id"]
    assert [h["node_id"] for h in granted["paths"][0]["hops"]] == ["A", "B", "C"]
    seq = log.seq
    off = [records.link_to_wire(x) for x in links_of("B", edges, status=control_pb2.LINK_STATUS_OFF)
           if x.link_id == "B-C"]
    d.handle("report", records.report_to_wire("B", off))
    moved = [e for e in log.since(seq)["events"] if e["kind"] == "reroute"]
    assert [(e["path_id"], e["result"], e["nodes"]) for e in moved] == [(pid, "moved", ["A", "B", "E", "F", "C"])]


def test_agent_events_do_not_wait_for_barriers():
    """A registration, report or departure sends its flows with their barriers and answers at
    once: waiting held each registration up to the barrier timeout while ovs-vswitchd worked
    through a 200-node bring-up, and agents gave up and registered again."""
    class KwSender(RecordingSender):
        def __init__(self) -> None:
            super().__init__()
            self.kwargs: list[dict] = []

        def execute(self, actions, **kw):
            self.kwargs.append(kw)
            return super().execute(actions)

    sender = KwSender()
    d = BridgeDispatch(QuSeCCore(inventory=inventory_for(SQUARE)), sender, lambda: {}, EventLog())
    for i, n in enumerate("ABCD", start=1):
        register(d, n, i)
    d.handle("gone", {"node_id": "D"})
    assert len(sender.kwargs) == 5 and all(kw.get("confirm") is False for kw in sender.kwargs)
