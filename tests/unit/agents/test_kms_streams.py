"""004-style key streams without sockets: two nodes' KeyStreams wired directly (real SQLite, simulated link)."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest

from kms_agents import metrics
from kms_agents.config import Caps
from kms_agents.etsi004 import KeyStreams, StreamError, sae_from_uri
from kms_agents.proto import etsi004_pb2 as pb
from kms_agents.proto import peer_pb2 as pb_peer
from tests.unit.agents.test_kms_service import make

S = pb.Status


class Sync:
    """A node's KeyStreams whose calls (coroutines, as the aio servicer awaits them) run to completion."""

    def __init__(self, streams: KeyStreams) -> None:
        object.__setattr__(self, "streams", streams)

    def __getattr__(self, name: str):
        attr = getattr(self.streams, name)
        if asyncio.iscoroutinefunction(attr):
            return lambda *args, **kwargs: asyncio.run(attr(*args, **kwargs))
        return attr

    def __setattr__(self, name: str, value) -> None:
        setattr(self.streams, name, value)


def wire(tmp_path: Path, caps=None, **kw):
    a, b = make(tmp_path, **kw)
    streams: dict[str, KeyStreams] = {}
    for node, svc in (("A", a), ("B", b)):
        streams[node] = KeyStreams(svc, lambda peer, ev, me=node: streams[peer].on_peer_event(me, ev), caps=caps)
    return Sync(streams["A"]), Sync(streams["B"])


def open_req(src="m", dst="s", ksid="", chunk=32, **qos):
    return pb.OpenConnectRequest(source=f"qkd://{src}", destination=f"qkd://{dst}", key_stream_id=ksid,
                                 qos=pb.QoS(key_chunk_size=chunk, **qos))


def get(ksid, index, size=256):
    return pb.GetKeyRequest(key_stream_id=ksid, index=index, metadata=pb.Metadata(size=size))


def test_rendezvous_and_identical_chunks(tmp_path: Path) -> None:
    ka, kb = wire(tmp_path)
    r = ka.open_connect("m", open_req())
    assert r.status == S.PEER_NOT_CONNECTED and r.qos.metadata_mimetype == "application/json"
    assert kb.open_connect("s", open_req(ksid=r.key_stream_id)).status == S.SUCCESSFUL
    x, y = kb.get_key("s", get(r.key_stream_id, 3)), ka.get_key("m", get(r.key_stream_id, 3))
    assert x.status == y.status == S.SUCCESSFUL and x.key_buffer == y.key_buffer and len(x.key_buffer) == 32
    assert json.loads(x.metadata.buffer)["hops"] == 0
    with pytest.raises(StreamError) as e:
        ka.get_key("m", get(r.key_stream_id, 3))
    assert e.value.code == grpc.StatusCode.OUT_OF_RANGE
    assert kb.close("s", r.key_stream_id).status == S.SUCCESSFUL
    assert ka.get_key("m", get(r.key_stream_id, 4)).status == S.PEER_APPLICATION_NOT_CONNECTED


def test_status_codes_without_sockets(tmp_path: Path) -> None:
    ka, kb = wire(tmp_path, clock=lambda: 1000.5, rate=256 * 2 * 2)   # one block available per direction
    assert ka.open_connect("m", open_req(dst="far")).status == S.NO_QKD_CONNECTION
    assert ka.open_connect("m", open_req(chunk=4096)).status == S.QOS_NOT_MET
    r = ka.open_connect("m", open_req(chunk=32))
    assert ka.open_connect("m", open_req(ksid=r.key_stream_id)).status == S.KEY_STREAM_ID_IN_USE
    kb.open_connect("s", open_req(ksid=r.key_stream_id))
    small = ka.get_key("m", get(r.key_stream_id, 0, size=2))
    assert small.status == S.METADATA_SIZE_INSUFFICIENT and small.metadata.size > 2
    assert ka.get_key("m", get(r.key_stream_id, 0)).status == S.SUCCESSFUL
    assert ka.get_key("m", get(r.key_stream_id, 1)).status == S.INSUFFICIENT_KEY
    with pytest.raises(StreamError) as e:
        kb.get_key("s2", get(r.key_stream_id, 0))
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(StreamError):
        ka.open_connect("m2", open_req())   # acting for another SAE


def test_uri_forms() -> None:
    assert sae_from_uri("qkd://sae-a") == sae_from_uri("sae-a") == sae_from_uri("qkd://sae-a/") == "sae-a"


def test_stream_ends_after_its_ttl(tmp_path: Path) -> None:
    ka, kb = wire(tmp_path)
    now = [5000.0]
    ka.clock = kb.clock = lambda: now[0]
    r = ka.open_connect("m", open_req(ttl=10))
    kb.open_connect("s", open_req(ksid=r.key_stream_id, ttl=10))
    assert ka.get_key("m", get(r.key_stream_id, 0)).status == S.SUCCESSFUL
    now[0] += 11
    with pytest.raises(StreamError, match="expired") as e:
        kb.get_key("s", get(r.key_stream_id, 0))
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert kb.service.store.pending_ids("m", "s") == []     # its undelivered chunk is gone too


def test_events_route_hop_by_hop_over_the_graph(tmp_path: Path) -> None:
    ka, _ = wire(tmp_path)
    ka.graph = {"A": ["B"], "B": ["A", "C", "D"], "C": ["B", "E"], "D": ["B", "E"], "E": ["C", "D"], "Z": []}
    assert ka.next_hop("B") == "B" and ka.next_hop("E") == "B" and ka.next_hop("Z") is None
    with pytest.raises(ValueError, match="neighbouring nodes only"):
        ka.on_peer_event("E", pb_peer.StreamEventRequest(kind=pb_peer.OPENED))


def test_one_sae_holds_at_most_its_calls_and_cancelled_waits_end_at_once(tmp_path: Path) -> None:
    ka, _ = wire(tmp_path, caps=Caps(etsi004_calls_per_sae=3))
    streams = ka.streams

    async def scenario() -> None:
        # the peer application never joins: each OPEN_CONNECT waits its 45 s QoS timeout
        waits = [asyncio.ensure_future(streams.open_connect("m", open_req(timeout=45_000))) for _ in range(3)]
        await asyncio.sleep(0.2)
        assert not any(w.done() for w in waits)
        with pytest.raises(StreamError) as e:          # a 4th call of the same SAE is refused at once
            await streams.open_connect("m", open_req(timeout=45_000))
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "3 ETSI 004 calls" in e.value.message
        # another SAE of the node is served meanwhile (waits hold no thread)
        other = await asyncio.wait_for(streams.open_connect("m2", open_req(src="m2", timeout=0)), 2.0)
        assert other.status == S.PEER_NOT_CONNECTED
        for w in waits:                                 # the clients cancel: the waits end now
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        assert streams._calls == {}
        again = await asyncio.wait_for(streams.open_connect("m", open_req(timeout=0)), 2.0)
        assert again.status == S.PEER_NOT_CONNECTED

    before = metrics.refusals("etsi004", "calls_per_sae")
    asyncio.run(scenario())
    assert metrics.refusals("etsi004", "calls_per_sae") == before + 1


def test_never_joined_streams_are_capped_per_sae_and_end_by_themselves(tmp_path: Path) -> None:
    ka, kb = wire(tmp_path, caps=Caps(etsi004_streams_per_sae=5, etsi004_join_s=0.3))
    ids = [ka.open_connect("m", open_req()).key_stream_id for _ in range(5)]
    assert len(set(ids)) == 5 and len(kb.streams._streams) == 5   # reserved at both nodes
    with pytest.raises(StreamError) as e:
        ka.open_connect("m", open_req())
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "5 key streams open" in e.value.message
    assert ka.open_connect("m2", open_req(src="m2")).status == S.PEER_NOT_CONNECTED   # caps are per SAE
    kb.open_connect("s", open_req(ksid=ids[0]))                   # one of them is joined
    time.sleep(0.4)
    assert ka.sweep(force=True) == 5                               # 4 never joined + m2's
    assert set(ka.streams._streams) == {ids[0]}
    assert ka.open_connect("m", open_req()).status == S.PEER_NOT_CONNECTED   # room again


def test_stream_events_take_their_origin_from_tls_or_a_signature(tmp_path: Path) -> None:
    from kms_agents.etsi004 import event_body
    from kms_agents.identity import NodeIdentity
    from tests.helpers.pki import make_ca, make_cert
    ka, _ = wire(tmp_path)
    ka.graph = {"A": ["B"], "B": ["A", "C"], "C": ["B"]}
    ca = make_ca()
    ident = {n: NodeIdentity(n, *make_cert(ca, n), ca[0]) for n in "ABC"}
    ev = pb_peer.StreamEventRequest(kind=pb_peer.OPENED, key_stream_id="k1", source="far", destination="m",
                                    key_chunk_size=32, origin_node="C", target_node="A", hop_limit=3)
    before = metrics.refusals("peer", "event_origin")
    with pytest.raises(ValueError, match="relayed by node B claims origin node C, which it does not prove"):
        ka.on_peer_event("B", ev)                     # B speaks for C: no signature, no stream
    ka.identity = ident["A"]
    ev.sent_unix_ms = int(ka.clock() * 1000)
    ev.origin_cert, ev.origin_signature = ident["B"].cert_der, ident["B"].sign(event_body(ev))
    with pytest.raises(ValueError, match="names node:B, not node:C"):
        ka.on_peer_event("B", ev)                     # B signs with its own key
    ev.origin_cert, ev.origin_signature = ident["C"].cert_der, ident["C"].sign(event_body(ev))
    closed = pb_peer.StreamEventRequest()
    closed.CopyFrom(ev)
    closed.kind = pb_peer.CLOSED
    with pytest.raises(ValueError, match="does not verify"):
        ka.on_peer_event("B", closed)                 # C's signature over OPENED does not cover CLOSED
    assert metrics.refusals("peer", "event_origin") == before + 3 and "k1" not in ka.streams._streams
    assert ka.on_peer_event("B", ev).status == S.SUCCESSFUL   # C's own signature: the stream is C's
    assert ka.streams._streams["k1"].opener == "far"
    # a neighbour speaking for itself needs no signature (TLS names it)
    direct = pb_peer.StreamEventRequest(kind=pb_peer.OPENED, key_stream_id="k2", source="s", destination="m",
                                        key_chunk_size=32)
    assert ka.on_peer_event("B", direct).status == S.SUCCESSFUL
