"""004-style key streams without sockets: two nodes' KeyStreams wired directly (real SQLite, simulated link)."""
from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from kms_agents.etsi004 import KeyStreams, StreamError, sae_from_uri
from kms_agents.proto import etsi004_pb2 as pb
from kms_agents.proto import peer_pb2 as pb_peer
from tests.unit.agents.test_kms_service import make

S = pb.Status


def wire(tmp_path: Path, **kw):
    a, b = make(tmp_path, **kw)
    streams: dict[str, KeyStreams] = {}
    for node, svc in (("A", a), ("B", b)):
        streams[node] = KeyStreams(svc, lambda peer, ev, me=node: streams[peer].on_peer_event(me, ev))
    return streams["A"], streams["B"]


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
