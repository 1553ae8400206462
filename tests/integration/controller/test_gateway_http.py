"""The gateway's HTTP ports against the real controller: each caps its connections (the next is
closed at once, before TLS, and logged), a silent connection is cut at the deadline, and the
operator port keeps a mutual-TLS connection alive across requests, each answered for the
certificate's identity."""
from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.parse

import pytest

from mininet_topos.launch.controller import Controller
from quseccontroller.gateway.httpd import CONNECTION_DEADLINE_S, MAX_CONNECTIONS
from tests.helpers.pki import make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), ["A"])


@pytest.fixture(scope="module")
def ctl(tmp_path_factory, pki):
    with Controller(tmp_path_factory.mktemp("qusec"), ca_cert=pki.ca_cert, cert=pki.qusec_cert,
                    key=pki.qusec_key) as c:
        yield c


def hostport(url: str) -> tuple[str, int]:
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port


def tls(ctl, pki, cert_key) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    ctx.check_hostname = False
    ctx.load_cert_chain(*cert_key)
    return ctx.wrap_socket(socket.create_connection(hostport(ctl.https_url), timeout=10))


def get(sock: socket.socket, path: str) -> tuple[int, dict, dict]:
    """One HTTP/1.1 GET on an open connection: status, headers, JSON body."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: qusec\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the answer to {path}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(body)


def closed_within(sock: socket.socket, limit: float) -> float | None:
    sock.settimeout(limit)
    t0 = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except (TimeoutError, socket.timeout):
        return None
    except OSError:
        pass
    return time.monotonic() - t0


def test_operator_connection_serves_several_requests_each_for_its_certificate(ctl, pki) -> None:
    with tls(ctl, pki, pki.operator) as s:
        for path in ("/healthz", "/status", "/events?since=0", "/nothing"):
            status, headers, body = get(s, path)
            assert status in (200, 404), (path, status, body)
            assert headers.get("connection", "keep-alive").lower() == "keep-alive"
        assert get(s, "/healthz")[2]["app_connected"] is True
    with tls(ctl, pki, pki.node("A")) as s:                  # a node's certificate: 403, every time
        for path in ("/status", "/status"):
            status, _, body = get(s, path)
            assert status == 403 and "needs an operator certificate" in body["message"]


def test_each_port_closes_the_connection_over_its_cap_at_once(ctl) -> None:
    held = [socket.create_connection(hostport(ctl.https_url), timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)                                       # all counted (accepted) by now
        extra = socket.create_connection(hostport(ctl.https_url), timeout=10)
        took = closed_within(extra, 5.0)                      # before any TLS: closed, not answered
        extra.close()
        assert took is not None and took < 2.0, took
    finally:
        for s in held:
            s.close()
    assert "event=http_refused" in ctl.gateway_log.read_text(errors="replace")
    deadline = time.monotonic() + 5                           # the slots come back
    while True:
        try:
            with socket.create_connection(hostport(ctl.http_url), timeout=5) as s:
                status, _, body = get(s, "/healthz")
            break
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert status == 200 and body["status"] == "SERVING"


def test_a_silent_connection_is_cut_at_the_deadline(ctl) -> None:
    with socket.create_connection(hostport(ctl.https_url), timeout=10) as s:   # no ClientHello
        took = closed_within(s, CONNECTION_DEADLINE_S + 5)
    assert took is not None and CONNECTION_DEADLINE_S - 1 < took < CONNECTION_DEADLINE_S + 3, took
