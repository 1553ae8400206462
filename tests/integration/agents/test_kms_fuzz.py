"""Fuzz the ETSI 014 server with malformed requests: never a 5xx other than 503, and it keeps serving."""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, small_topology

pytestmark = pytest.mark.integration
ALLOWED = {200, 400, 401, 404, 405, 503}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
fields = st.sampled_from(["number", "size", "additional_slave_SAE_IDs", "extension_mandatory",
                          "extension_optional", "key_IDs", "key_ID", "key_IDs_extension", "junk"])
bodies = st.one_of(
    st.dictionaries(fields, json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64))
saes_ids = st.sampled_from(["sae-a1", "sae-a2", "sae-b1", "sae-c1", "ghost", "", "%2F", "sae-a1/x", "..",
                            "%00", "s%C3%A9"])
calls = st.sampled_from(["status", "enc_keys", "dec_keys", "other", ""])
queries = st.one_of(st.just(""), st.dictionaries(st.sampled_from(["number", "size", "key_ID", "x"]),
                                                 st.text(max_size=8), max_size=3)
                    .map(lambda d: "&".join(f"{k}={quote(v)}" for k, v in d.items())),
                    st.text(max_size=12).map(lambda t: quote(t, safe="=&%")))


@pytest.fixture(scope="module")
def saes(tmp_path_factory):
    with LocalNetwork(small_topology(), tmp_path_factory.mktemp("kmsfuzz"), with_qusec=False) as net:
        s = Saes(json.loads(net.network_json.read_text()))
        yield s
        s.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "FOO"]), sae=saes_ids, call=calls, query=queries,
       body=bodies)
def test_malformed_requests_get_4xx_or_503(saes, method, sae, call, query, body) -> None:
    client = saes.kme("sae-a1")
    path = f"/api/v1/keys/{sae}/{call}" + (f"?{query}" if query else "")
    status, out = client.request(method, path, raw_body=body if method != "GET" or body[:1] == b"{" else None)
    assert status in ALLOWED, (method, path, body, status, out)
    if method == "HEAD":
        return
    if status in (400, 503):
        assert isinstance(out, dict) and isinstance(out.get("message"), str)
    if status == 401:
        assert out is None


@pytest.mark.parametrize("body", [b"[" * 200_000, b'{"number":' * 50_000, b"\xff\xfe", b'{"size": 1e999}',
                                  b'{"number": 1, "number": 2}', b"null", b'"text"'])
def test_hostile_json_bodies(saes, body) -> None:
    status, out = saes.kme("sae-a1").request("POST", "/api/v1/keys/sae-b1/enc_keys", raw_body=body)
    assert status in (200, 400) and (status == 200 or "message" in out), (body[:20], status, out)
    if status == 200:
        saes.kme("sae-b1").dec_keys("sae-a1", [k["key_ID"] for k in out["keys"]])


def test_agent_keeps_serving_after_the_fuzz(saes) -> None:
    keys = saes.kme("sae-a1").enc_keys("sae-b1", number=2)
    assert [k.key for k in saes.kme("sae-b1").dec_keys("sae-a1", [k.key_id for k in keys])] == \
        [k.key for k in keys]


@pytest.mark.parametrize("raw", [b"GARBAGE\r\n\r\n", b"GET /api/v1/keys/sae-b1/status HTTP/9.9\r\n\r\n",
                                 b"POST /api/v1/keys/sae-b1/enc_keys HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                                 b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                                 b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n"])
def test_garbled_http_gets_a_4xx_with_json_body(saes, raw) -> None:
    import socket
    import ssl

    e = saes.doc["saes"]["sae-a1"]
    ctx = ssl.create_default_context(cafile=saes.doc["ca_cert"])
    ctx.load_cert_chain(e["cert"], e["key"])
    host, port = saes.doc["nodes"]["A"]["etsi014_url"][len("https://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw_sock, \
            ctx.wrap_socket(raw_sock, server_hostname=host) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert 400 <= status < 500, head
    assert "message" in json.loads(body)
