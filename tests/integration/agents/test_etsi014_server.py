"""The ETSI 014 server edge against a real agent process: each deadline of [caps] ends what a
client holds (a silent TCP connection at the handshake deadline, a keep-alive connection left idle,
a body trickled after its headers), and HTTP/1.1 keep-alive answers pipelined requests in order
with the server's headers."""
from __future__ import annotations

import json
import socket
import ssl
import threading
import time

import pytest

from kms_agents.client import Etsi014Client
from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import refusals, small_topology

pytestmark = pytest.mark.integration

CAPS = {"etsi014_handshake_s": 1.5, "etsi014_idle_s": 2.0, "etsi014_request_s": 2.0,
        "etsi014_connections": 8}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    def caps(_node: str, cfg) -> None:
        for k, v in CAPS.items():
            setattr(cfg.caps, k, v)

    with LocalNetwork(small_topology(), tmp_path_factory.mktemp("etsi014edge"), with_qusec=False,
                      config_hook=caps) as n:
        n.doc = json.loads(n.network_json.read_text())
        yield n


def address(net) -> tuple[str, int]:
    host, port = net.doc["nodes"]["A"]["etsi014_url"][len("https://"):].rsplit(":", 1)
    return host, int(port)


def tls(net, sae: str = "sae-a1") -> ssl.SSLSocket:
    e = net.doc["saes"][sae]
    ctx = ssl.create_default_context(cafile=net.doc["ca_cert"])
    ctx.load_cert_chain(e["cert"], e["key"])
    host, port = address(net)
    return ctx.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname=host)


def closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server ends ``sock`` (reading everything it sends), at most ``limit``."""
    t0 = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except (TimeoutError, socket.timeout):
        return limit
    except OSError:
        pass
    return time.monotonic() - t0


def served(net) -> None:
    e = net.doc["saes"]["sae-a1"]
    with Etsi014Client(net.doc["nodes"]["A"]["etsi014_url"], net.doc["ca_cert"], e["cert"], e["key"],
                       kme_node="A") as c:
        assert c.status("sae-b1")["source_KME_ID"] == "A"


def test_silent_tcp_connection_is_closed_at_the_handshake_deadline(net) -> None:
    before = refusals(net.agents["A"], "etsi014", "handshake_deadline")
    with socket.create_connection(address(net), timeout=10) as s:   # no ClientHello, ever
        took = closed_after(s, 10.0)
    assert CAPS["etsi014_handshake_s"] - 0.3 < took < CAPS["etsi014_handshake_s"] + 2.0, took
    assert refusals(net.agents["A"], "etsi014", "handshake_deadline") == before + 1
    served(net)


def test_idle_keep_alive_connection_is_closed_after_idle_s(net) -> None:
    s = tls(net)
    s.sendall(b"GET /api/v1/keys/sae-b1/status HTTP/1.1\r\nHost: a\r\n\r\n")
    head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 200 "), head[:40]
    took = closed_after(s, 10.0)
    s.close()
    assert CAPS["etsi014_idle_s"] - 0.3 < took < CAPS["etsi014_idle_s"] + 2.0, took
    with tls(net) as s:                      # a connection that never sends a request at all
        took = closed_after(s, 10.0)
    assert CAPS["etsi014_idle_s"] - 0.3 < took < CAPS["etsi014_idle_s"] + 2.0, took


def test_connections_cut_at_the_handshake_deadline_give_their_slots_back(net) -> None:
    """A connection aborted at the handshake deadline used to keep its slot (start_tls answers
    None then, and the count was never given back): as many silent connections as the cap
    would have shut the endpoint to everyone for good."""
    socks = [socket.create_connection(address(net), timeout=10) for _ in range(CAPS["etsi014_connections"])]
    try:
        took = [closed_after(s, 10.0) for s in socks]
        assert max(took) < CAPS["etsi014_handshake_s"] + 3.0, took
    finally:
        for s in socks:
            s.close()
    served(net)
    served(net)


def test_trickled_body_is_cut_at_the_request_deadline(net) -> None:
    before = refusals(net.agents["A"], "etsi014", "request_deadline")
    s = tls(net)
    body = json.dumps({"number": 1, "size": 256, "extension_optional": [{"x": "y" * 60}]}).encode()
    s.sendall(b"POST /api/v1/keys/sae-b1/enc_keys HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))   # headers whole at once, then the body by the byte
    closed: list[float] = []
    threading.Thread(target=lambda: closed.append(closed_after(s, 20.0)), daemon=True).start()
    t0 = time.monotonic()
    sent = 0
    try:
        while not closed and sent < len(body) - 1 and time.monotonic() - t0 < 15:
            s.send(body[sent:sent + 1])
            sent += 1
            time.sleep(0.25)
    except OSError:
        pass
    deadline = time.monotonic() + 5
    while not closed and time.monotonic() < deadline:
        time.sleep(0.05)
    s.close()
    assert closed, "the server kept the trickled body open"
    assert time.monotonic() - t0 < CAPS["etsi014_request_s"] + 6 and sent < len(body) - 1
    assert refusals(net.agents["A"], "etsi014", "request_deadline") == before + 1
    served(net)


def test_pipelined_requests_are_answered_in_order_with_the_servers_headers(net) -> None:
    s = tls(net)
    s.sendall(b"GET /api/v1/keys/sae-b1/status HTTP/1.1\r\nHost: a\r\n\r\n"
              b"GET /api/v1/keys/sae-b1/nothing HTTP/1.1\r\nHost: a\r\n\r\n"
              b"GET /api/v1/keys/sae-a2/status HTTP/1.1\r\nHost: a\r\n\r\n")
    data = b""
    answers: list[tuple[bytes, dict, dict]] = []
    s.settimeout(10)
    while len(answers) < 3:
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        n = int(headers["content-length"])
        while len(data) < n:
            data += s.recv(65536)
        answers.append((lines[0].encode(), headers, json.loads(data[:n])))
        data = data[n:]
    s.close()
    assert [a[0].split()[:2] for a in answers] == [[b"HTTP/1.1", b"200"], [b"HTTP/1.1", b"404"],
                                                    [b"HTTP/1.1", b"200"]]
    assert [a[2].get("slave_SAE_ID") for a in answers] == ["sae-b1", None, "sae-a2"]
    for _, headers, _ in answers:
        assert headers["server"] == "qusec-vkms/1" and headers["cache-control"] == "no-store"
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert headers.get("connection", "keep-alive").lower() == "keep-alive"
