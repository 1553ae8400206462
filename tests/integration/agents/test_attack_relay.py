"""A trusted relay node that turns: it re-seals what it forwards with its own (valid) link key and
rewrites it. Every hop and the destination check the message against their own authorisation from
QuSeC, the destination combines only matching shares, and Void removes only keys of its path.
Relay nodes in-process (real gRPC + mutual TLS, SQLite, simulated QKD: tests/helpers/relay_harness.py);
a neighbour forging key-stream events is tried against real agent processes."""
from __future__ import annotations

import dataclasses
import json
import os

import grpc
import pytest

from kms_agents import metrics, rpc
from kms_agents.proto import etsi004_pb2 as pb004
from kms_agents.proto import peer_pb2, peer_pb2_grpc
from kms_agents.relay.messages import AckStatus, Reason, RelayFailure, VoidMessage
from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, node_cert, small_topology
from tests.helpers.relay_harness import Net, build

pytestmark = pytest.mark.integration

LINE = ["A", "B", "C", "D", "E"]
MESH = [("A", "B"), ("B", "C"), ("C", "E"), ("A", "D"), ("D", "F"), ("F", "E")]


@pytest.fixture
def line(tmp_path) -> Net:
    net = build(tmp_path, LINE, list(zip(LINE, LINE[1:])))
    net.routes["E"] = [LINE]
    yield net
    net.close()


@pytest.fixture
def mesh(tmp_path) -> Net:
    net = build(tmp_path, ["A", "B", "C", "D", "E", "F"], MESH)
    net.routes["E"] = [["A", "B", "C", "E"], ["A", "D", "F", "E"]]
    yield net
    net.close()


def turn(net: Net, node: str, **rewrite) -> None:
    """Make ``node`` forward every message it relays with fields rewritten (sealed afresh with its
    own link key toward the next hop, so the next hop's MAC check passes)."""
    sender = net.nodes[node].engine.receiver.sender
    honest = sender.seal    # a relay node seals onward, then transmits once its store commit is in

    def seal(peer, addr, **kw):
        return honest(peer, addr, **{**kw, **rewrite})
    sender.seal = seal


def relay(net: Net, n: int = 2, slave: str = "sae-e") -> list[tuple[str, bytes]]:
    keys = [(f"k{i}-{os.urandom(4).hex()}", os.urandom(32)) for i in range(n)]
    out, _, _ = net.nodes["A"].engine.relay_keys(master_sae="sae-a", slave_saes=[slave], dst_node="E",
                                                 keys=keys)
    return [(k.key_id, k.key) for k in out]   # as the master gets them (a retry's are fresh)


def nothing_stored(net: Net, keys) -> bool:
    return all(node.store.peek(kid) is None for node in net.nodes.values() for kid, _ in keys)


@pytest.mark.parametrize("level", ["qkd", "hybrid"])
def test_relay_node_cannot_redirect_a_key_to_another_sae(line: Net, level: str) -> None:
    line.level = level
    relay(line)                                   # honest first: works
    turn(line, "C", targets=("sae-e2",))          # C now redirects to another SAE on E
    before = metrics.refusals("relay", "wrong_saes")
    keys = [(f"r{i}", os.urandom(32)) for i in range(2)]
    with pytest.raises(RelayFailure) as info:
        line.nodes["A"].engine.relay_keys(master_sae="sae-a", slave_saes=["sae-e"], dst_node="E", keys=keys)
    assert info.value.reason == Reason.DENIED
    assert "node D" in info.value.message and "message is sae-a -> sae-e2" in info.value.message
    assert metrics.refusals("relay", "wrong_saes") >= before + 1
    assert nothing_stored(line, keys)
    assert line.nodes["E"].store.pending_count("sae-a", "sae-e2") == 0


def test_relay_node_cannot_redirect_a_key_to_another_sae_at_the_last_hop(line: Net) -> None:
    turn(line, "D", targets=("sae-e2",), initiator_sae="sae-x")   # the hop before the destination
    with pytest.raises(RelayFailure, match="node E: .*message is sae-x -> sae-e2"):
        relay(line)
    assert line.nodes["E"].store.pending_count("sae-x", "sae-e2") == 0


@pytest.mark.parametrize("level", ["qkd", "hybrid"])
def test_relay_node_cannot_redirect_a_multipath_key_to_another_sae(mesh: Net, level: str) -> None:
    mesh.level = level
    turn(mesh, "B", targets=("sae-e2",))          # B sees one random share only, and rewrites it
    keys = [(f"m{i}", os.urandom(32)) for i in range(2)]
    with pytest.raises(RelayFailure, match="node C: .*message is sae-a -> sae-e2"):
        mesh.nodes["A"].engine.relay_keys(master_sae="sae-a", slave_saes=["sae-e"], dst_node="E", keys=keys)
    assert nothing_stored(mesh, keys)
    assert not mesh.nodes["E"].engine.receiver.pending      # the honest share was voided too


def test_relay_node_cannot_raise_or_lower_the_security_level(line: Net) -> None:
    turn(line, "C", level="pqc")                  # pqc is never granted unless asked for
    with pytest.raises(RelayFailure, match="node D: .*level qkd, message is pqc"):
        relay(line)


def test_shares_of_one_key_that_disagree_are_not_combined(mesh: Net) -> None:
    # B renames the keys of its share (nothing an authorisation names): the destination
    # combines only shares that carry the same key ids, SAEs and level
    before = metrics.refusals("relay", "share_mismatch")
    turn(mesh, "B", key_ids=("x1", "x2"))
    keys = [(f"s{i}", os.urandom(32)) for i in range(2)]
    with pytest.raises(RelayFailure) as info:
        mesh.nodes["A"].engine.relay_keys(master_sae="sae-a", slave_saes=["sae-e"], dst_node="E", keys=keys)
    assert "not combined" in info.value.message or "already here" in info.value.message
    assert metrics.refusals("relay", "share_mismatch") == before + 1
    assert nothing_stored(mesh, keys + [("x1", b""), ("x2", b"")])


def test_a_node_cannot_void_keys_of_another_path(mesh: Net) -> None:
    # keys relayed over A-B-C-E (one path: route E over the first path only)
    mesh.routes["E"] = [["A", "B", "C", "E"]]
    keys = relay(mesh)
    ids = tuple(k for k, _ in keys)
    # F holds an authorisation on another path to E, and asks E to void those keys over it
    other = mesh.grant([["A", "D", "F", "E"]], src_sae="sae-a", dst_saes=("sae-e",)).paths[0].path_id
    f = mesh.nodes["F"]
    before = metrics.refusals("relay", "void_not_on_path")
    ack = f.transport.void("E", mesh.addr_of("E"), VoidMessage(path_id=other, key_id=ids[0], reason="evil",
                                                               from_node="F", key_ids=ids), 5.0)
    assert ack.status == AckStatus.KEY_NOT_PRESENT
    assert metrics.refusals("relay", "void_not_on_path") == before + 1
    assert all(mesh.nodes["E"].store.peek(k) is not None for k in ids)
    # a node on no path of E's at all is refused outright
    with pytest.raises(RelayFailure, match="node E: no authorisation on path .* from D"):
        mesh.nodes["D"].transport.void("E", mesh.addr_of("E"), VoidMessage(
            path_id=other, key_id=ids[0], reason="evil", from_node="D", key_ids=ids), 5.0)
    # the path's own previous hop voids them
    path = mesh.nodes["E"].store.peek(ids[0]).meta["qusec_path_id"]
    ack = mesh.nodes["C"].transport.void("E", mesh.addr_of("E"), VoidMessage(
        path_id=path, key_id=ids[0], reason="relay failed", from_node="C", key_ids=ids), 5.0)
    assert ack.status == AckStatus.VOIDED and all(mesh.nodes["E"].store.peek(k) is None for k in ids)


def test_rerouted_path_whose_new_hop_is_not_authorised_yet_is_refused_then_retried(tmp_path) -> None:
    # QuSeC moves a path (same id) at B from C to F and pushes B its new authorisation first;
    # the source's own is unchanged, so it reuses the path. F refuses at once (it waits for
    # nothing), and the source asks QuSeC afresh, whose answer comes once every hop has acked.
    net = build(tmp_path, ["A", "B", "C", "E", "F"], [("A", "B"), ("B", "C"), ("C", "E"), ("B", "F"), ("F", "E")])
    try:
        net.routes["E"] = [["A", "B", "C", "E"]]
        relay(net, n=1)
        pid = net.granted[-1]
        b_auth = net.nodes["B"].authz.get(pid)
        net.nodes["B"].authz.grant(dataclasses.replace(b_auth, next_hop="F", next_hop_addr=net.addr_of("F")))
        before = metrics.refusals("relay", "unknown_path")
        net.routes["E"] = [["A", "B", "F", "E"]]
        keys = relay(net, n=1)
        assert metrics.refusals("relay", "unknown_path") == before + 1      # F, once
        got = net.nodes["E"].store.fetch("sae-a", "sae-e", [keys[0][0]])
        assert got[0].material == keys[0][1] and got[0].meta["qusec_path"] == ["A", "B", "F", "E"]
        assert net.granted[-1] != pid
    finally:
        net.close()


# -- key-stream events (real agent processes) ----------------------------------------------------
@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    with LocalNetwork(small_topology(), tmp_path_factory.mktemp("events"), with_qusec=False) as n:
        n.doc = json.loads(n.network_json.read_text())
        yield n


def test_neighbour_cannot_close_another_nodes_key_stream(agents) -> None:
    saes = Saes(agents.doc)
    b, c = saes.app("sae-b1"), saes.app("sae-c1")
    first = b.open_connect("qkd://sae-c1", "qkd://sae-b1", timeout_ms=0)
    assert c.open_connect("qkd://sae-c1", "qkd://sae-b1", key_stream_id=first.key_stream_id).status == 0
    # A (B's neighbour, its own certificate) tells B that C's application closed the stream
    ch = grpc.secure_channel(agents.doc["nodes"]["B"]["relay_addr"],
                             rpc.channel_credentials(agents.doc["ca_cert"], *node_cert(agents.state_dir, "A")),
                             options=[("grpc.ssl_target_name_override", "B")])
    with pytest.raises(grpc.RpcError) as e:
        peer_pb2_grpc.PeerKmsStub(ch).StreamEvent(peer_pb2.StreamEventRequest(
            kind=peer_pb2.CLOSED, key_stream_id=first.key_stream_id, source="sae-c1", destination="sae-b1",
            origin_node="C", target_node="B", hop_limit=3), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "relayed by node A claims origin node C, which it does not prove" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:       # nor as itself: A serves neither SAE
        peer_pb2_grpc.PeerKmsStub(ch).StreamEvent(peer_pb2.StreamEventRequest(
            kind=peer_pb2.CLOSED, key_stream_id=first.key_stream_id, source="sae-c1", destination="sae-b1"),
            timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ch.close()
    kb, kc = b.get_key(first.key_stream_id, 0), c.get_key(first.key_stream_id, 0)   # still open
    assert kb.status == kc.status == pb004.Status.SUCCESSFUL and kb.key_buffer == kc.key_buffer
    b.close(), c.close()
    saes.close()
