"""No caller holds an agent's servers, against real agent processes: ETSI 004 waits hold no thread
and end when the client cancels, abandoned streams end, the relay server refuses unknown paths at
once, ETSI 014 caps connections and gives each request a whole-request deadline."""
from __future__ import annotations

import json
import socket
import ssl
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kms_agents import rpc
from kms_agents.client import Etsi014Client, Etsi014Error
from kms_agents.proto import etsi004_pb2 as pb
from kms_agents.proto import etsi004_pb2_grpc, relay_pb2, relay_pb2_grpc
from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, node_cert, refusals, small_topology

pytestmark = pytest.mark.integration
S = pb.Status

CAPS = {"etsi014_connections": 12, "etsi014_connections_per_sae": 4, "etsi014_request_s": 2.0,
        "etsi004_streams_per_sae": 16, "etsi004_join_s": 2.0}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    def caps(_node: str, cfg) -> None:
        for k, v in CAPS.items():
            setattr(cfg.caps, k, v)

    with LocalNetwork(small_topology(), tmp_path_factory.mktemp("limits"), with_qusec=False,
                      config_hook=caps) as n:
        n.doc = json.loads(n.network_json.read_text())
        yield n


def stub_as(net, sae: str) -> tuple[grpc.Channel, etsi004_pb2_grpc.KeyDeliveryStub]:
    e = net.doc["saes"][sae]
    ch = grpc.secure_channel(net.doc["nodes"][e["node"]]["etsi004_addr"],
                             rpc.channel_credentials(net.doc["ca_cert"], e["cert"], e["key"]),
                             options=[("grpc.ssl_target_name_override", e["node"])])
    return ch, etsi004_pb2_grpc.KeyDeliveryStub(ch)


def open_req(src: str, dst: str, timeout_ms: int, ksid: str = "") -> pb.OpenConnectRequest:
    return pb.OpenConnectRequest(source=f"qkd://{src}", destination=f"qkd://{dst}", key_stream_id=ksid,
                                 qos=pb.QoS(key_chunk_size=32, timeout=timeout_ms))


def health_ms(addr: str, net, node: str) -> float:
    cert = node_cert(net.state_dir, node)
    ch = grpc.secure_channel(addr, rpc.channel_credentials(net.doc["ca_cert"], *cert),
                             options=[("grpc.ssl_target_name_override", node)])
    grpc.channel_ready_future(ch).result(timeout=5)
    t0 = time.monotonic()
    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    ms = (time.monotonic() - t0) * 1000
    ch.close()
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return ms


def test_one_sae_cannot_block_the_etsi004_server(net) -> None:
    before = refusals(net.agents["A"], "etsi004", "calls_per_sae")
    ch, stub = stub_as(net, "sae-a1")
    # 32 OPEN_CONNECT whose peer never joins, each waiting its 45 s QoS timeout
    calls = [stub.OpenConnect.future(open_req("sae-a1", "sae-b1", 45_000), timeout=60) for _ in range(32)]
    time.sleep(1.0)
    refused = [c for c in calls if c.done()]
    waiting = [c for c in calls if not c.done()]
    assert len(waiting) == 8 and len(refused) == 24        # etsi004_calls_per_sae = 8
    assert all(c.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED for c in refused)
    assert "8 ETSI 004 calls in progress" in refused[0].exception().details()
    assert refusals(net.agents["A"], "etsi004", "calls_per_sae") == before + 24
    # every other SAE of the node is served at once, and the server is healthy
    saes = Saes(net.doc)
    a2, b2 = saes.app("sae-a2"), saes.app("sae-b2")
    t0 = time.monotonic()
    first = a2.open_connect("qkd://sae-a2", "qkd://sae-b2", timeout_ms=0)
    joined = b2.open_connect("qkd://sae-a2", "qkd://sae-b2", key_stream_id=first.key_stream_id, timeout_ms=0)
    ka, kb = a2.get_key(first.key_stream_id, 0), b2.get_key(first.key_stream_id, 0)
    assert joined.status == ka.status == kb.status == S.SUCCESSFUL and ka.key_buffer == kb.key_buffer
    assert time.monotonic() - t0 < 2.0
    assert health_ms(net.doc["nodes"]["A"]["etsi004_addr"], net, "A") < 100
    # the attacker's clients cancel: their waits end at the server now, not in 45 s
    for c in waiting:
        c.cancel()
    deadline = time.monotonic() + 5
    while True:
        try:
            r = stub.OpenConnect(open_req("sae-a1", "sae-b1", 0), timeout=5)
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
            time.sleep(0.05)
    assert r.status == S.PEER_NOT_CONNECTED and time.monotonic() < deadline
    a2.close(), b2.close(), ch.close()
    saes.close()


def test_abandoned_etsi004_streams_end_by_themselves(net) -> None:
    ch, stub = stub_as(net, "sae-b2")
    opened = []
    with pytest.raises(grpc.RpcError) as e:
        for _ in range(40):    # streams sae-a2 never joins
            opened.append(stub.OpenConnect(open_req("sae-b2", "sae-a2", 0), timeout=5).key_stream_id)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "16 key streams open" in e.value.details()
    assert len(opened) == 16
    time.sleep(CAPS["etsi004_join_s"] + 1.5)               # not joined within etsi004_join_s: ended
    again = stub.OpenConnect(open_req("sae-b2", "sae-a2", 0), timeout=5)
    assert again.status == S.PEER_NOT_CONNECTED
    with pytest.raises(grpc.RpcError) as e:                  # and forgotten with their chunks
        stub.GetKey(pb.GetKeyRequest(key_stream_id=opened[0], index=0), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    ch.close()


def test_bogus_path_ids_cannot_stall_the_relay_server(net) -> None:
    # node B (A's neighbour, its real certificate) floods A with relays for paths never granted
    before = refusals(net.agents["A"], "relay", "unknown_path")
    ch = grpc.secure_channel(net.doc["nodes"]["A"]["relay_addr"],
                             rpc.channel_credentials(net.doc["ca_cert"], *node_cert(net.state_dir, "B")),
                             options=[("grpc.ssl_target_name_override", "A")])
    stub = relay_pb2_grpc.KeyRelayStub(ch)

    def bogus(i: int) -> relay_pb2.RelayRequest:
        return relay_pb2.RelayRequest(version="qusec-relay/1", path_id=f"bogus-{i}", share_index=1, share_count=1,
                                      seq=i + 1, key_id=f"k{i}", from_node="B", src_node="B", dst_node="C",
                                      link_id="A-B", size_bits=256, pad_key_ids=["x"], ciphertext=bytes(32),
                                      tag=bytes(16), security_level="qkd", initiator_sae_id="sae-b1",
                                      target_sae_ids=["sae-c1"])
    grpc.channel_ready_future(ch).result(timeout=5)
    t0 = time.monotonic()
    calls = [stub.Relay.future(bogus(i), timeout=30) for i in range(256)]
    during = health_ms(net.doc["nodes"]["A"]["relay_addr"], net, "A")
    codes = [c.exception().code() for c in calls]
    took = time.monotonic() - t0
    assert set(codes) == {grpc.StatusCode.PERMISSION_DENIED}
    assert "no authorisation from QuSeC for this path" in calls[0].exception().details()
    assert took < 3.0, f"256 bogus relays took {took:.1f} s"      # before: 1 s of a worker each (8 s)
    assert during < 100
    assert refusals(net.agents["A"], "relay", "unknown_path") == before + 256
    ch.close()


def tls_to(net, node: str, sae: str) -> ssl.SSLSocket:
    e = net.doc["saes"][sae]
    ctx = ssl.create_default_context(cafile=net.doc["ca_cert"])
    ctx.load_cert_chain(e["cert"], e["key"])
    host, port = net.doc["nodes"][node]["etsi014_url"][len("https://"):].rsplit(":", 1)
    return ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=host)


def test_trickling_client_cannot_hold_an_etsi014_request(net) -> None:
    before = refusals(net.agents["A"], "etsi014", "request_deadline")
    sock = tls_to(net, "A", "sae-a1")
    request = b"GET /api/v1/keys/sae-b1/status HTTP/1.1\r\nHost: a\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"
    closed_at: list[float] = []

    def reader() -> None:
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        closed_at.append(time.monotonic())

    threading.Thread(target=reader, daemon=True).start()
    t0 = time.monotonic()
    sent = 0
    try:
        while not closed_at and sent < len(request) and time.monotonic() - t0 < 20:
            sock.send(request[sent:sent + 1])      # a byte every 0.25 s: each read is "recent"
            sent += 1
            time.sleep(0.25)
    except OSError:
        pass
    deadline = time.monotonic() + 5
    while not closed_at and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed_at, "the server kept the trickled request open"
    assert closed_at[0] - t0 < CAPS["etsi014_request_s"] + 1.5 and sent < len(request)
    assert refusals(net.agents["A"], "etsi014", "request_deadline") == before + 1
    sock.close()
    with Etsi014Client(net.doc["nodes"]["A"]["etsi014_url"], net.doc["ca_cert"],
                       net.doc["saes"]["sae-a1"]["cert"], net.doc["saes"]["sae-a1"]["key"], kme_node="A") as c:
        assert c.status("sae-b1")["source_KME_ID"] == "A"   # honest requests are untouched


def client(net, sae: str, node: str = "A") -> Etsi014Client:
    e = net.doc["saes"][sae]
    return Etsi014Client(net.doc["nodes"][node]["etsi014_url"], net.doc["ca_cert"], e["cert"], e["key"],
                         kme_node=node)


def settle(fn, timeout: float = 5.0):
    """``fn()`` once the server has noticed closed connections (it retries until it stops failing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (Etsi014Error, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_one_sae_cannot_exhaust_etsi014_connections(net) -> None:
    before = refusals(net.agents["A"], "etsi014", "connections_per_sae")
    held = [client(net, "sae-a1") for _ in range(4)]
    for c in held:                                    # four keep-alive connections: the cap
        settle(lambda c=c: c.status("sae-b1"))
    extra = client(net, "sae-a1")
    with pytest.raises(Etsi014Error) as e:
        extra.status("sae-b1")
    assert e.value.status == 503 and "has 4 connections open to this KME" in e.value.body["message"]
    assert refusals(net.agents["A"], "etsi014", "connections_per_sae") == before + 1
    other = client(net, "sae-a2")
    assert other.status("sae-b1")["master_SAE_ID"] == "sae-a2"   # another SAE is served
    held.pop().close()
    assert settle(lambda: extra.status("sae-b1"))["master_SAE_ID"] == "sae-a1"
    # the total: 12 connections of any SAEs (5 are open above); the next is closed before TLS
    total_before = refusals(net.agents["A"], "etsi014", "connections")
    raw: list[ssl.SSLSocket] = []
    with pytest.raises((ssl.SSLError, OSError)):
        for sae in ["sae-a2", "sae-b1", "sae-b2"] * 4:   # 3 per SAE (under its own cap)
            raw.append(tls_to(net, "A", sae))
    assert len(raw) <= 12 - 5
    assert refusals(net.agents["A"], "etsi014", "connections") == total_before + 1
    for s in raw:
        s.close()
    for c in (*held, extra, other):
        c.close()
    assert settle(lambda: client(net, "sae-a2").status("sae-b1"))["master_SAE_ID"] == "sae-a2"
