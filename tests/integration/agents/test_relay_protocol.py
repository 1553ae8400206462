"""Relay protocol across in-process vKMS relay nodes (real gRPC + mutual TLS, SQLite, simulated QKD).

QuSeC is stood in for by ``relay_harness.Net.grant`` (paths + authorisations); the full
stack with real agent processes and the real controller is in test_relay_network.py.
"""
from __future__ import annotations

import dataclasses
import os
import threading

import grpc
import pytest

from kms_agents.keystore import KeyNotFound
from kms_agents.proto import relay_pb2, relay_pb2_grpc
from kms_agents.relay import crypto as relay_crypto
from kms_agents.relay import engine as relay_engine
from kms_agents.relay import wire
from kms_agents.relay.messages import Reason, RelayFailure
from kms_agents.rpc import peer_identity
from tests.helpers.relay_harness import Net, build, server_creds, transport

pytestmark = pytest.mark.integration

LINE = ["A", "B", "C", "D", "E"]


@pytest.fixture
def line(tmp_path) -> Net:
    net = build(tmp_path, LINE, list(zip(LINE, LINE[1:])))
    net.routes["E"] = [LINE]
    yield net
    net.close()


def relay(net: Net, n: int = 3, size: int = 32, src: str = "A", dst: str = "E",
          master: str = "sae-a", slave: str = "sae-e"):
    keys = [(f"k{i}-{os.urandom(4).hex()}", os.urandom(size)) for i in range(n)]
    out, reply, level = net.nodes[src].engine.relay_keys(
        master_sae=master, slave_saes=[slave], dst_node=dst, keys=keys)
    return keys, out, reply, level


def cursors(net: Net) -> dict[tuple[str, str], int]:
    """Link key handed out so far per (node, peer) direction, in 32-byte blocks."""
    out = {}
    for node in net.nodes.values():
        for peer, src in node.sources.items():
            out[(node.node_id, peer)] = node.store.link_cursor(src.link_id, f"{node.node_id}>{peer}",
                                                               src._fp)
    return out


def test_four_hop_relay_identical_keys_gone_after_delivery(line: Net) -> None:
    keys, out, reply, level = relay(line)
    assert level == "qkd" and [h.node_id for h in reply.paths[0].hops] == LINE
    assert [(k.key_id, k.key) for k in out] == keys
    e = line.nodes["E"].store
    got = e.fetch("sae-a", "sae-e", [kid for kid, _ in keys])
    assert [(k.key_id, k.material) for k in got] == keys
    assert got[0].meta["qusec_path"] == LINE and got[0].meta["qusec_hops"] == 3
    with pytest.raises(KeyNotFound):
        e.fetch("sae-a", "sae-e", [keys[0][0]])
    for mid in "BCD":  # relay nodes keep nothing
        assert line.nodes[mid].store.peek(keys[0][0]) is None


def test_link_key_per_hop_is_key_plus_mac_and_never_reused(line: Net) -> None:
    before = cursors(line)
    relay(line, n=4, size=64)
    after = cursors(line)
    used = {k: (after[k] - before[k]) * 32 for k in after}
    for a, b in zip(LINE, LINE[1:]):
        # one bulk message: the 4 keys' pad and one MAC key
        assert used[(a, b)] == 4 * 64 + relay_crypto.MAC_KEY_BYTES, (a, b)
        assert used[(b, a)] == 0  # the reverse direction's key is untouched
    # the claimed IDs cannot be claimed again: B's end of A-B refuses a second claim
    src = line.nodes["A"].sources["B"]
    lk = src.take(32)
    assert line.nodes["B"].sources["A"].claim(lk.key_ids, 32) == lk.material
    with pytest.raises(Exception, match="already claimed"):
        line.nodes["B"].sources["A"].claim(lk.key_ids, 32)


def test_relay_without_authorisation_is_refused_by_the_relay_node(line: Net) -> None:
    reply = line.grant([LINE])
    line.nodes["C"].authz.revoke(reply.paths[0].path_id, "test")
    a = line.nodes["A"].engine
    with pytest.raises(RelayFailure) as info:
        a._relay_batch(reply, "sae-a", ["sae-e"], "E", [("k", os.urandom(32))], lambda p: p)
    assert info.value.reason == Reason.DENIED
    assert "node C" in info.value.message and "revoked (test)" in info.value.message
    assert line.nodes["E"].store.peek("k") is None
    # a path QuSeC never granted at all
    reply = dataclasses.replace(reply, paths=(dataclasses.replace(reply.paths[0], path_id="made-up"),))
    line.nodes["A"].authz  # (the source uses the reply itself)
    with pytest.raises(RelayFailure, match="no authorisation from QuSeC"):
        a._relay_batch(reply, "sae-a", ["sae-e"], "E", [("k2", os.urandom(32))], lambda p: p)


class Interposer(relay_pb2_grpc.KeyRelayServicer):
    """Sits between B and C on the wire (holds C's server cert and B's client cert, as an
    attacker on a compromised link would have neither: this is the strongest test)."""

    def __init__(self, net: Net, mode: str) -> None:
        self.mode = mode
        self.net = net
        b = net.nodes["B"]
        self.out = transport(net.ca, b.cert, b.key)
        self.seen: list[relay_pb2.RelayRequest] = []
        self.voids: list[relay_pb2.VoidRequest] = []
        self.acks: list[str] = []

    def Relay(self, request, context):
        assert peer_identity(context).name == "B"
        self.seen.append(relay_pb2.RelayRequest.FromString(request.SerializeToString()))
        if self.mode == "flip" or (self.mode == "flip-second" and len(self.seen) == 2):
            ct = bytearray(request.ciphertext)
            ct[0] ^= 0x01
            request.ciphertext = bytes(ct)
        elif self.mode == "retarget":
            request.target_sae_ids[:] = ["sae-evil"]
        try:
            ack = self.out.relay("C", self.net.nodes["C"].addr, wire.message_of(request), 5.0)
            self.acks.append(ack.status.name)
            return wire.ack_to_proto(ack)
        except RelayFailure as exc:
            self.acks.append(exc.reason.value)
            context.abort(wire.status_of(exc.reason), exc.message)

    def Void(self, request, context):
        self.voids.append(request)
        try:
            return wire.ack_to_proto(self.out.void("C", self.net.nodes["C"].addr, wire.void_of(request), 5.0))
        except RelayFailure as exc:
            context.abort(wire.status_of(exc.reason), exc.message)


def interpose(net: Net, mode: str) -> Interposer:
    proxy = Interposer(net, mode)
    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(8))
    relay_pb2_grpc.add_KeyRelayServicer_to_server(proxy, server)
    c = net.nodes["C"]
    port = server.add_secure_port("127.0.0.1:0", server_creds(net.ca, c.cert, c.key))
    server.start()
    net.addr_override["C"] = f"127.0.0.1:{port}"
    proxy.server = server
    return proxy


@pytest.mark.parametrize("mode", ["flip", "retarget"])
def test_tampered_message_rejected_and_key_voided(line: Net, mode: str) -> None:
    proxy = interpose(line, mode)
    try:
        with pytest.raises(RelayFailure) as info:
            relay(line, n=2)
        assert info.value.reason == Reason.NOT_AUTHENTIC
        assert "node C" in info.value.message and "does not verify" in info.value.message
        for node in line.nodes.values():
            assert node.store.pending_count("sae-a", "sae-e") == 0
            assert not node.engine.receiver.pending
    finally:
        proxy.server.stop(0)


def test_replayed_message_rejected(line: Net) -> None:
    proxy = interpose(line, "pass")
    try:
        keys, out, _, _ = relay(line, n=1)
        original = proxy.seen[-1]
        for change in ({}, {"seq": original.seq + 1}):
            replay = relay_pb2.RelayRequest.FromString(original.SerializeToString())
            for k, v in change.items():
                setattr(replay, k, v)
            with pytest.raises(RelayFailure) as info:
                proxy.out.relay("C", line.nodes["C"].addr, wire.message_of(replay), 5.0)
            # same seq: the replay window; new seq: the MAC (seq is authenticated)
            assert info.value.reason in (Reason.DUPLICATE, Reason.NOT_AUTHENTIC), info.value
            assert "replay" in info.value.message or "already used" in info.value.message \
                or "does not verify" in info.value.message
        # the delivered key is still exactly once at E
        assert len(line.nodes["E"].store.fetch("sae-a", "sae-e", [keys[0][0]])) == 1
    finally:
        proxy.server.stop(0)


def test_message_from_wrong_peer_refused(line: Net) -> None:
    # D (authenticated by its certificate) pretends to be B toward C
    reply = line.grant([LINE])
    d = line.nodes["D"]
    req = relay_pb2.RelayRequest(version=relay_crypto.VERSION, path_id=reply.paths[0].path_id,
                                 share_index=1, share_count=1, seq=1, key_id="x", from_node="B",
                                 src_node="A", dst_node="E", link_id="B-C", size_bits=256,
                                 ciphertext=bytes(32), tag=bytes(16), security_level="qkd")
    stub = d.channels.key_relay("C", line.nodes["C"].addr)   # the raw gRPC edge
    with pytest.raises(grpc.RpcError) as info:
        stub.Relay(req, timeout=5.0)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "TLS peer is 'D'" in info.value.details()
    req.from_node = "D"
    with pytest.raises(RelayFailure, match="previous hop is B, message came from D"):
        d.transport.relay("C", line.nodes["C"].addr, wire.message_of(req), 5.0)
    req.version = "qusec-relay/0"
    with pytest.raises(grpc.RpcError) as info:
        stub.Relay(req, timeout=5.0)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "version 'qusec-relay/0' not supported" in info.value.details()


def test_multipath_shares_travel_node_disjoint_paths(tmp_path) -> None:
    nodes = ["A", "B", "C", "D", "E", "F"]
    net = build(tmp_path, nodes, [("A", "B"), ("B", "C"), ("C", "E"), ("A", "D"), ("D", "F"),
                                  ("F", "E")])
    net.routes["E"] = [["A", "B", "C", "E"], ["A", "D", "F", "E"]]
    try:
        before = cursors(net)
        keys, out, reply, _ = relay(net, n=2)
        after = cursors(net)
        assert len(reply.paths) == 2
        for a, b in [("A", "B"), ("B", "C"), ("C", "E"), ("A", "D"), ("D", "F"), ("F", "E")]:
            # one share of both keys per path, one message: 2 pads and one MAC key
            assert (after[(a, b)] - before[(a, b)]) * 32 == 2 * 32 + 32, (a, b)
        got = net.nodes["E"].store.fetch("sae-a", "sae-e", [k for k, _ in keys])
        assert [g.material for g in got] == [m for _, m in keys] == [k.key for k in out]
        assert got[0].meta["qusec_shares"] == 2
        # a share alone is not the key: tamper with path 2 and the half-arrived key is voided
        net.routes["E"] = [["A", "B", "C", "E"], ["A", "D", "F", "E"]]
        net.nodes["A"].engine.forget_path("E", "sae-a", "sae-e")
        reply = net.grant(net.routes["E"])
        net.nodes["F"].authz.revoke(reply.paths[1].path_id, "test")
        with pytest.raises(RelayFailure, match="node F"):
            net.nodes["A"].engine._relay_batch(reply, "sae-a", ["sae-e"], "E",
                                               [("half", os.urandom(32))], lambda p: p)
        assert not net.nodes["E"].engine.receiver.pending and net.nodes["E"].store.peek("half") is None
    finally:
        net.close()


def test_hybrid_keys_differ_from_relayed_key_and_match(line: Net) -> None:
    line.level = "hybrid"
    keys, out, reply, level = relay(line, n=8)  # bulk: 4 messages of 2 keys, 4 ML-KEM exchanges
    assert level == "hybrid" and len({k.key for k in out}) == 8
    got = line.nodes["E"].store.fetch("sae-a", "sae-e", [k for k, _ in keys])
    for (kid, qkd), mine, theirs in zip(keys, out, got):
        assert mine.key_id == theirs.key_id == kid
        assert mine.key == theirs.material and mine.key != qkd and len(mine.key) == len(qkd)
        assert theirs.meta["qusec_security_level"] == "hybrid"


def test_pqc_and_level_upgrade(line: Net) -> None:
    from kms_agents.relay.network import effective_level
    assert effective_level("qkd", "hybrid") == "hybrid"
    assert effective_level("pqc", None) == "pqc"
    with pytest.raises(RelayFailure, match="'pqc' requested"):
        effective_level("qkd", "pqc")
    line.level = "pqc"
    before = cursors(line)
    keys, out, _, level = relay(line, n=1)
    got = line.nodes["E"].store.fetch("sae-a", "sae-e", [keys[0][0]])
    assert level == "pqc" and got[0].material == out[0].key != keys[0][1]
    assert cursors(line) == before  # the PQC fallback burns no QKD link key


def test_not_enough_link_key_fails_cleanly(tmp_path) -> None:
    net = build(tmp_path, LINE, list(zip(LINE, LINE[1:])), rate_bps=1e5)
    net.routes["E"] = [LINE]
    try:
        # drain C's key toward D
        src = net.nodes["C"].sources["D"]
        src.take(src.available_bytes())
        with pytest.raises(RelayFailure) as info:
            relay(net, n=1)
        assert info.value.reason == Reason.NO_KEY
        assert "node C: not enough link key toward D" in info.value.message
        assert net.nodes["E"].store.pending_count("sae-a", "sae-e") == 0
    finally:
        net.close()


def test_concurrent_relays_share_hops(line: Net) -> None:
    errors: list[Exception] = []

    def worker():
        try:
            for _ in range(3):
                keys, out, _, _ = relay(line, n=4)
                got = line.nodes["E"].store.fetch("sae-a", "sae-e", [k for k, _ in keys])
                assert [g.material for g in got] == [m for _, m in keys]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_rerouted_path_is_not_reused(tmp_path) -> None:
    nodes = ["A", "B", "C", "D", "E", "F"]
    net = build(tmp_path, nodes, [("A", "B"), ("B", "C"), ("C", "E"), ("A", "D"), ("D", "F"),
                                  ("F", "E")])
    net.routes["E"] = [["A", "B", "C", "E"]]
    try:
        _, _, first, _ = relay(net, n=1)
        _, _, again, _ = relay(net, n=1)
        assert again.paths[0].path_id == first.paths[0].path_id  # cached while it matches
        # QuSeC reroutes the path (same id) away from B: the source's authorisation changes
        pid = first.paths[0].path_id
        old = net.nodes["A"].authz.get(pid)
        net.nodes["A"].authz.grant(dataclasses.replace(old, next_hop="D"))
        net.routes["E"] = [["A", "D", "F", "E"]]
        keys, out, reply, _ = relay(net, n=1)
        assert [h.node_id for h in reply.paths[0].hops] == ["A", "D", "F", "E"]
        got = net.nodes["E"].store.fetch("sae-a", "sae-e", [keys[0][0]])
        assert got[0].material == out[0].key
    finally:
        net.close()


def test_unreachable_hop_fails_fast_then_a_new_path_is_used(tmp_path) -> None:
    nodes = ["A", "B", "C", "D", "E", "F"]
    net = build(tmp_path, nodes, [("A", "B"), ("B", "C"), ("C", "E"), ("A", "D"), ("D", "F"),
                                  ("F", "E")])
    net.routes["E"] = [["A", "B", "C", "E"]]
    try:
        relay(net, n=1)
        net.nodes["B"].server.stop(0)            # B's vKMS goes away
        with pytest.raises(RelayFailure) as info:  # QuSeC has not noticed: same path, clear error
            relay(net, n=1)
        assert info.value.reason == Reason.UNREACHABLE
        net.routes["E"] = [["A", "D", "F", "E"]]   # QuSeC now routes around B
        keys, out, reply, _ = relay(net, n=1)
        assert [h.node_id for h in reply.paths[0].hops] == ["A", "D", "F", "E"]
    finally:
        net.close()


def test_destination_checks_the_saes_belong_to_the_ends(line: Net) -> None:
    where = {"sae-a": "A", "sae-e": "E", "sae-c": "C"}
    line.nodes["E"].engine.receiver.sae_node = where.get
    relay(line, n=1)  # consistent: fine
    with pytest.raises(RelayFailure) as info:
        relay(line, n=1, slave="sae-c")
    assert info.value.reason == Reason.INVALID
    assert "target SAE(s) ['sae-c'] are not attached to node E" in info.value.message
    with pytest.raises(RelayFailure, match="master SAE 'sae-x' is not attached to node A"):
        relay(line, n=1, master="sae-x")


def test_network_relayer_gives_master_the_derived_key_and_refuses_multinode_hybrid(line: Net) -> None:
    from kms_agents.relay.network import NetworkRelayer
    from kms_agents.keyrequest import KeyServiceError
    relayer = NetworkRelayer(line.nodes["A"].engine)
    line.level = "hybrid"
    keys = [("h1", os.urandom(32)), ("h2", os.urandom(32))]
    relayed_in = list(keys)
    result = relayer.relay(master_sae="sae-a", slave_saes=["sae-e"], dst_node="E", keys=keys,
                           security_level=None, extensions={})
    assert result.security_level == "hybrid" and result.paths == [LINE]
    assert keys == relayed_in                                      # the caller's list untouched
    got = line.nodes["E"].store.fetch("sae-a", "sae-e", ["h1", "h2"])
    assert [k for k, _ in result.keys] == ["h1", "h2"]
    assert [g.material for g in got] == [m for _, m in result.keys]   # master == slave
    assert [m for _, m in result.keys] != [m for _, m in relayed_in]  # derived, not the QKD key
    with pytest.raises(KeyServiceError) as info:                   # the same keys to a 2nd node
        relayer.relay(master_sae="sae-a", slave_saes=["sae-d"], dst_node="D", keys=result.keys,
                      security_level=None, extensions={})
    assert info.value.status == 503 and "several nodes" in str(info.value.message)


def test_multipath_hybrid(tmp_path) -> None:
    nodes = ["A", "B", "C", "D", "E", "F"]
    net = build(tmp_path, nodes, [("A", "B"), ("B", "C"), ("C", "E"), ("A", "D"), ("D", "F"),
                                  ("F", "E")])
    net.routes["E"] = [["A", "B", "C", "E"], ["A", "D", "F", "E"]]
    net.level = "hybrid"
    try:
        keys, out, reply, level = relay(net, n=4)
        got = net.nodes["E"].store.fetch("sae-a", "sae-e", [k for k, _ in keys])
        assert level == "hybrid" and len(reply.paths) == 2
        assert [g.material for g in got] == [k.key for k in out]
        assert all(k.key != m for k, (_, m) in zip(out, keys))
    finally:
        net.close()


def test_part_of_a_request_fails_the_delivered_part_is_voided(line: Net, monkeypatch) -> None:
    monkeypatch.setattr(relay_engine, "MAX_BULK_BYTES", 32)   # one key per message
    proxy = interpose(line, "flip-second")
    try:
        a = line.nodes["A"].engine
        reply = line.grant([LINE])
        keys = [(f"part-{i}", os.urandom(32)) for i in range(2)]  # two messages, one flipped
        with pytest.raises(RelayFailure, match="does not verify"):
            a._relay_batch(reply, "sae-a", ["sae-e"], "E", keys, lambda p: p)
        assert len(proxy.seen) == 2 and len(proxy.voids) == 2   # both voided through C to E
        assert sum(ack == "RELAYED" for ack in proxy.acks) == 1  # one had been delivered
        e = line.nodes["E"].store
        assert e.peek("part-0") is None and e.peek("part-1") is None
        assert e.pending_count("sae-a", "sae-e") == 0
    finally:
        proxy.server.stop(0)


def test_a_key_voided_before_it_arrives_is_not_stored(line: Net) -> None:
    """A void can overtake its relay message (the message still queued at a node behind it, the
    void passed on at once; seen on a loaded 150-node Mininet: the source's attempt timed out,
    the void reached the destination first and the late message stored a key the master was
    told had failed, kept forever). The destination refuses keys voided before they arrived."""
    from kms_agents.relay.messages import VoidMessage
    reply = line.grant([LINE])
    path_id = reply.paths[0].path_id
    keys = [(f"late-{i}-{os.urandom(4).hex()}", os.urandom(32)) for i in range(2)]
    e = line.nodes["E"]
    ack = e.engine.receiver.handle_void(VoidMessage(path_id=path_id, key_id=keys[0][0], reason="timeout",
                                                    from_node="D", key_ids=tuple(k for k, _ in keys)), "D")
    assert ack.status.name == "KEY_NOT_PRESENT"
    with pytest.raises(RelayFailure, match="voided by its source before it arrived") as info:
        line.nodes["A"].engine._relay_batch(reply, "sae-a", ["sae-e"], "E", keys, lambda p: p)
    assert info.value.reason == Reason.DENIED
    assert all(e.store.peek(kid) is None for kid, _ in keys)
    assert e.store.pending_count("sae-a", "sae-e") == 0
    # other keys on the same path still go through
    fresh = [(f"fresh-{os.urandom(4).hex()}", os.urandom(32))]
    line.nodes["A"].engine._relay_batch(line.grant([LINE]), "sae-a", ["sae-e"], "E", fresh, lambda p: p)
    assert e.store.peek(fresh[0][0]) is not None
