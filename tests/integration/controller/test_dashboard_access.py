"""The dashboard is no way around operator authorisation: the real gateway's token listener
answers nothing without the run's token, a wrong one, another Host, or past its stream bounds,
and will not bind beyond loopback unless told to."""
from __future__ import annotations

import http.client
import json
import os
import ssl
import stat
import subprocess
import sys
import time
import urllib.parse

import pytest

from mininet_topos.launch.controller import Controller
from quseccontroller.dashboard import access
from tests.helpers.pki import make_pki

pytestmark = pytest.mark.integration

DATA_PATHS = ("/dashboard/", "/dashboard/snapshot", "/dashboard/stream", "/dashboard/static/dashboard.js")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), ["A"])


@pytest.fixture(scope="module")
def ctl(tmp_path_factory, pki):
    with Controller(tmp_path_factory.mktemp("qusec"), ca_cert=pki.ca_cert, cert=pki.qusec_cert,
                    key=pki.qusec_key) as c:
        deadline = time.monotonic() + 10
        while not c.dashboard_url and time.monotonic() < deadline:
            time.sleep(0.05)
        yield c


def request(ctl, path: str, *, headers: dict | None = None, host: str | None = None,
            read: bool = True) -> tuple[int, dict, bytes]:
    u = urllib.parse.urlsplit(ctl.dashboard_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    hdrs = dict(headers or {})
    if host is not None:
        hdrs["Host"] = host
    conn.request("GET", path, headers=hdrs)
    resp = conn.getresponse()
    body = resp.read() if read or resp.status != 200 else resp.read1(65536)
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def token(ctl) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(ctl.dashboard_url).query)["token"][0]


def cookie(ctl) -> str:
    status, headers, _ = request(ctl, f"/dashboard/?token={token(ctl)}")
    assert status == 303 and headers["location"] == "/dashboard/"
    return headers["set-cookie"].split(";")[0]


def test_the_token_is_256_bits_in_a_0600_file(ctl) -> None:
    path = access.token_path(ctl.state_dir)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(token(ctl)) >= 43 and path.read_text().strip() == token(ctl)
    assert ctl.gateway_info()["dashboard"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("path", DATA_PATHS)
def test_no_token_gets_401_and_no_data(ctl, path) -> None:
    status, headers, body = request(ctl, path)
    assert status == 401, (status, body)
    assert b"dashboard needs its token" in body and b"nodes" not in body and b"<svg" not in body
    assert "set-cookie" not in headers


@pytest.mark.parametrize("path", DATA_PATHS)
def test_a_wrong_token_or_cookie_gets_403(ctl, path) -> None:
    good = token(ctl)
    for wrong in (good[:-1], good + "A", "0" * len(good)):
        status, headers, body = request(ctl, f"{path}?token={wrong}")
        assert status == 403 and b"wrong dashboard token" in body and "set-cookie" not in headers
    # the token itself is not a cookie, and a made-up cookie is none
    for value in (good, "x" * 64):
        status, _, body = request(ctl, path, headers={"Cookie": f"{access.COOKIE}={value}"})
        assert status == 401, (status, body)


def test_the_token_is_exchanged_for_an_httponly_strict_cookie(ctl) -> None:
    status, headers, _ = request(ctl, f"/dashboard/?token={token(ctl)}")
    assert status == 303 and headers["location"] == "/dashboard/"   # the token leaves the URL
    set_cookie = headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and token(ctl) not in set_cookie
    c = cookie(ctl)
    status, headers, body = request(ctl, "/dashboard/snapshot", headers={"Cookie": c})
    assert status == 200 and "nodes" in json.loads(body)
    assert "default-src 'self'" in headers["content-security-policy"]
    status, _, body = request(ctl, "/dashboard/", headers={"Cookie": c})
    assert status == 200 and b"dashboard.js" in body


def test_a_rebound_host_name_is_refused_even_with_the_cookie(ctl) -> None:
    c = cookie(ctl)
    for host in ("evil.example", "evil.example:80", "10.0.0.1"):
        status, _, body = request(ctl, "/dashboard/snapshot", headers={"Cookie": c}, host=host)
        assert status == 403 and b"nodes" not in body, host


def test_the_stream_needs_the_cookie_and_sends_a_snapshot(ctl) -> None:
    status, _, body = request(ctl, "/dashboard/stream")
    assert status == 401 and not body.startswith(b"event:")
    status, headers, body = request(ctl, "/dashboard/stream", headers={"Cookie": cookie(ctl)}, read=False)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert body.startswith(b"event: snapshot\ndata: {")


def test_streams_are_bounded_per_identity(ctl) -> None:
    u = urllib.parse.urlsplit(ctl.dashboard_url)
    c = cookie(ctl)
    held = []
    try:
        for _ in range(4):      # dashboard_max_streams_per_identity
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
            conn.request("GET", "/dashboard/stream", headers={"Cookie": c})
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read1(10)
            held.append(conn)
        status, _, body = request(ctl, "/dashboard/stream", headers={"Cookie": c})
        assert status == 429 and b"already holds 4" in body
    finally:
        for conn in held:
            conn.close()
    deadline = time.monotonic() + 5      # closed streams give their slots back
    while time.monotonic() < deadline:
        status, _, _ = request(ctl, "/dashboard/stream", headers={"Cookie": c}, read=False)
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200


def gateway(tmp_path, pki, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quseccontroller.gateway", "--state-dir", str(tmp_path),
                           "--ca-cert", pki.ca_cert, "--cert", pki.qusec_cert, "--key", pki.qusec_key,
                           "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                           "--operator-listen", "127.0.0.1:0", *flags],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0"])
def test_a_non_loopback_bind_is_refused_at_start(tmp_path, pki, listen) -> None:
    done = gateway(tmp_path, pki, "--dashboard-listen", listen)
    assert done.returncode == 2
    assert "is not a loopback address" in done.stderr and "--dashboard-remote allow" in done.stderr
    assert not access.token_path(tmp_path).exists()    # no token was made for it


def test_a_clean_stop_ends_the_runs_token(tmp_path, pki) -> None:
    with Controller(tmp_path / "q", ca_cert=pki.ca_cert, cert=pki.qusec_cert, key=pki.qusec_key) as c:
        deadline = time.monotonic() + 10
        while not c.dashboard_url and time.monotonic() < deadline:
            time.sleep(0.05)
        old = c.dashboard_url
        assert old
    assert not access.token_path(tmp_path / "q").exists()


# -- the operator port: an operator certificate, like /status ------------------------------------

def operator_get(ctl, pki, path: str, cert_key, *, read: bool = True, seconds: float = 0.0):
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    ctx.check_hostname = False
    ctx.load_cert_chain(*cert_key)
    u = urllib.parse.urlsplit(ctl.https_url)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=5)
    conn.request("GET", path)
    resp = conn.getresponse()
    if seconds:       # read the stream for this long; returns (status, when each chunk came)
        t0, times = time.monotonic(), []
        while time.monotonic() - t0 < seconds:
            if not resp.read1(65536):
                break
            times.append(time.monotonic() - t0)
        conn.close()
        return resp.status, times
    body = resp.read() if read else resp.read1(65536)
    conn.close()
    return resp.status, body


def test_the_operator_port_serves_the_dashboard_to_operators_only(ctl, pki) -> None:
    status, body = operator_get(ctl, pki, "/dashboard/snapshot", pki.operator)
    assert status == 200 and "nodes" in json.loads(body)
    status, body = operator_get(ctl, pki, "/dashboard/", pki.operator)
    assert status == 200 and b"dashboard.js" in body
    for path in DATA_PATHS:
        status, body = operator_get(ctl, pki, path, pki.nodes["A"])    # a node is not an operator
        assert status == 403 and b"needs an operator certificate" in body and b"nodes" not in body
    # the token is no key to the operator port, and the plain port names where it is
    status, body = operator_get(ctl, pki, f"/dashboard/?token={token(ctl)}", pki.nodes["A"])
    assert status == 403
    u = urllib.parse.urlsplit(ctl.http_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    conn.request("GET", "/dashboard/")
    resp = conn.getresponse()
    assert resp.status == 404 and "operator interface" in resp.read().decode()


def test_an_operator_stream_outlives_the_ports_connection_deadline(ctl, pki) -> None:
    from quseccontroller.gateway.httpd import CONNECTION_DEADLINE_S
    status, times = operator_get(ctl, pki, "/dashboard/stream", pki.operator,
                                 seconds=CONNECTION_DEADLINE_S + 2)
    assert status == 200 and times and times[-1] > CONNECTION_DEADLINE_S, times
