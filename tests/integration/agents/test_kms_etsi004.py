"""ETSI 004-style key streams over gRPC on real agents: every status code, errors, health, reflection."""
from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kms_agents.proto import etsi004_pb2 as pb
from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, small_topology

pytestmark = pytest.mark.integration
S = pb.Status


@pytest.fixture(scope="module")
def saes(tmp_path_factory):
    # B-C at 512 b/s: one 256-bit block per second per direction, so a 1024-byte chunk takes 32 s
    with LocalNetwork(small_topology(slow_bps=512.0), tmp_path_factory.mktemp("kms004"), with_qusec=False) as net:
        s = Saes(json.loads(net.network_json.read_text()))
        yield s
        s.close()


def uri(sae: str) -> str:
    return f"qkd://{sae}"


def open_pair(saes: Saes, src: str, dst: str, chunk: int = 32, timeout_ms: int = 0):
    a, b = saes.app(src), saes.app(dst)
    first = a.open_connect(uri(src), uri(dst), key_chunk_size=chunk, timeout_ms=timeout_ms)
    assert first.status == S.PEER_NOT_CONNECTED          # status 1
    second = b.open_connect(uri(src), uri(dst), key_stream_id=first.key_stream_id, key_chunk_size=chunk,
                            timeout_ms=timeout_ms)
    assert second.status == S.SUCCESSFUL and second.key_stream_id == first.key_stream_id
    return a, b, first.key_stream_id


def test_stream_chunks_match_at_both_ends_with_metadata(saes) -> None:
    a, b, ksid = open_pair(saes, "sae-a1", "sae-b1", chunk=64)
    ka = a.get_key(ksid, 0)
    kb = b.get_key(ksid, 0)
    assert ka.status == kb.status == S.SUCCESSFUL
    assert ka.key_buffer == kb.key_buffer and len(ka.key_buffer) == 64
    meta = json.loads(kb.metadata.buffer)
    assert meta["hops"] == 0 and meta["age"] >= 0 and kb.metadata.mimetype == "application/json"
    kb1 = b.get_key(ksid, 1)                        # the destination may ask first
    ka1 = a.get_key(ksid, 1)
    assert kb1.key_buffer == ka1.key_buffer != ka.key_buffer
    with pytest.raises(grpc.RpcError) as e:         # never handed out twice
        a.get_key(ksid, 0)
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert a.close_stream(ksid).status == S.SUCCESSFUL
    assert b.get_key(ksid, 2).status == S.PEER_APPLICATION_NOT_CONNECTED    # status 3 after CLOSE
    assert b.close_stream(ksid).status == S.SUCCESSFUL
    a.close(), b.close()


def test_open_connect_waits_for_the_peer_within_timeout(saes) -> None:
    import threading
    a, b = saes.app("sae-a2"), saes.app("sae-b2")
    first = a.open_connect(uri("sae-a2"), uri("sae-b2"), timeout_ms=0)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=b.open_connect(
        uri("sae-a2"), uri("sae-b2"), key_stream_id=first.key_stream_id, timeout_ms=3000)))
    t.start()
    t.join(10)
    assert result["r"].status == S.SUCCESSFUL
    # a second application opening with a reserved ID: status 5
    again = b.open_connect(uri("sae-a2"), uri("sae-b2"), key_stream_id=first.key_stream_id)
    assert again.status == S.KEY_STREAM_ID_IN_USE
    a.close_stream(first.key_stream_id), b.close_stream(first.key_stream_id)
    a.close(), b.close()


def test_status_3_peer_application_not_connected(saes) -> None:
    a = saes.app("sae-a1")
    r = a.open_connect(uri("sae-a1"), uri("sae-b2"))
    assert r.status == S.PEER_NOT_CONNECTED
    assert a.get_key(r.key_stream_id, 0).status == S.PEER_APPLICATION_NOT_CONNECTED
    a.close_stream(r.key_stream_id)
    a.close()


def test_status_4_no_qkd_connection(saes) -> None:
    a, c = saes.app("sae-a1"), saes.app("sae-c1")
    assert a.open_connect(uri("sae-a1"), uri("nobody")).status == S.NO_QKD_CONNECTION
    # C is two hops away: the applications meet (events pass through B), but with no QuSeC
    # here there is no relay path for the key
    r = a.open_connect(uri("sae-a1"), uri("sae-c1"))
    assert r.status == S.PEER_NOT_CONNECTED
    assert c.open_connect(uri("sae-a1"), uri("sae-c1"), key_stream_id=r.key_stream_id).status == S.SUCCESSFUL
    assert a.get_key(r.key_stream_id, 0).status == S.NO_QKD_CONNECTION
    assert c.get_key(r.key_stream_id, 0).status == S.NO_QKD_CONNECTION
    a.close_stream(r.key_stream_id), c.close_stream(r.key_stream_id)
    a.close(), c.close()


def test_status_7_qos_counter_proposal(saes) -> None:
    a = saes.app("sae-a1")
    r = a.open_connect(uri("sae-a1"), uri("sae-b1"), key_chunk_size=1 << 20)
    assert r.status == S.QOS_NOT_MET and r.qos.key_chunk_size == 1024   # max_key_size 8192 bits
    r = a.open_connect(uri("sae-a1"), uri("sae-b1"), min_bps=10**9)
    assert r.status == S.QOS_NOT_MET and 0 < r.qos.min_bps < 10**9
    r = a.open_connect(uri("sae-a1"), uri("sae-b1"), metadata_mimetype="text/xml")
    assert r.status == S.QOS_NOT_MET and r.qos.metadata_mimetype == "application/json"
    a.close()


def test_status_8_metadata_buffer_too_small(saes) -> None:
    a, b, ksid = open_pair(saes, "sae-a2", "sae-b1")
    small = a.get_key(ksid, 0, metadata_size=4)
    assert small.status == S.METADATA_SIZE_INSUFFICIENT and not small.key_buffer
    assert small.metadata.size > 4
    ok = a.get_key(ksid, 0, metadata_size=small.metadata.size)      # the chunk was kept
    assert ok.status == S.SUCCESSFUL and ok.key_buffer == b.get_key(ksid, 0).key_buffer
    a.close_stream(ksid), b.close_stream(ksid)
    a.close(), b.close()


def test_status_2_insufficient_key_then_6_timeout(saes) -> None:
    # B-C is a 512 b/s link: 1024-byte chunks drain it at once and take 32 s to come back
    b, c, ksid = open_pair(saes, "sae-b1", "sae-c1", chunk=1024)
    statuses = [b.get_key(ksid, i).status for i in range(40)]
    assert statuses[-1] == S.INSUFFICIENT_KEY
    b.close_stream(ksid), c.close_stream(ksid)
    b2, c2, ksid2 = open_pair(saes, "sae-b2", "sae-c1", chunk=1024, timeout_ms=300)
    t0 = time.monotonic()
    assert b2.get_key(ksid2, 0).status == S.TIMEOUT
    assert time.monotonic() - t0 >= 0.25
    b2.close_stream(ksid2), c2.close_stream(ksid2)
    for x in (b, c, b2, c2):
        x.close()


def test_grpc_errors_for_bad_requests(saes) -> None:
    a = saes.app("sae-a1")
    with pytest.raises(grpc.RpcError) as e:
        a.get_key("no-such-stream", 0)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-stream" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        a.open_connect(uri("sae-a2"), uri("sae-b1"))          # acting for another SAE
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:
        a.close_stream("no-such-stream")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    a.close()


def test_health_and_reflection(saes) -> None:
    doc = saes.doc
    e = doc["saes"]["sae-a1"]
    creds = grpc.ssl_channel_credentials(Path(doc["ca_cert"]).read_bytes(), Path(e["key"]).read_bytes(),
                                         Path(e["cert"]).read_bytes())
    with grpc.secure_channel(doc["nodes"]["A"]["etsi004_addr"], creds) as ch:
        h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert h.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              timeout=5))
        names = {s.name for s in resp.list_services_response.service}
        assert "qusec.etsi004.v1.KeyDelivery" in names and "grpc.health.v1.Health" in names


def test_stream_between_two_saes_of_one_node(saes) -> None:
    a, b, ksid = open_pair(saes, "sae-a1", "sae-a2", chunk=16)
    kb = b.get_key(ksid, 5)
    ka = a.get_key(ksid, 5)
    assert ka.status == kb.status == S.SUCCESSFUL and ka.key_buffer == kb.key_buffer
    assert json.loads(ka.metadata.buffer)["route_type"] == "local"
    a.close_stream(ksid), b.close_stream(ksid)
    a.close(), b.close()
