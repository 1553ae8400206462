"""The ETSI 014 server's pure request handling: where a request goes (404/405 or a Route), what
its body may be, and the key service's answer as a Reply, without sockets."""
from __future__ import annotations

import pytest

from kms_agents import etsi014
from kms_agents.etsi014 import MAX_BODY, Reply, Route, body_length, call, route
from kms_agents.keyrequest import KeyServiceError


@pytest.mark.parametrize("method, target, want", [
    ("GET", "/api/v1/keys/sae-b1/status", Route("sae-b1", "status", "")),
    ("POST", "/api/v1/keys/sae-b1/enc_keys", Route("sae-b1", "enc_keys", "")),
    ("GET", "/api/v1/keys/sae-b1/dec_keys?key_ID=x", Route("sae-b1", "dec_keys", "key_ID=x")),
    ("GET", "/api/v1/keys/s%C3%A9/status", Route("sé", "status", "")),
])
def test_routes(method, target, want) -> None:
    assert route(method, target) == want


@pytest.mark.parametrize("method, target, status", [
    ("GET", "/", 404), ("GET", "/api/v1/keys/sae-b1/nothing", 404), ("GET", "/api/v1/keys//status", 404),
    ("GET", "/api/v1/keys/sae-b1/status/x", 404), ("POST", "/api/v1/keys/sae-b1/status", 405),
    ("PUT", "/api/v1/keys/sae-b1/enc_keys", 405), ("HEAD", "/api/v1/keys/sae-b1/dec_keys", 405),
])
def test_wrong_resource_or_method(method, target, status) -> None:
    r = route(method, target)
    assert isinstance(r, Reply) and r.status == status and r.body["message"]
    if status == 405:
        assert r.headers["Allow"] in ("GET", "GET, POST")


@pytest.mark.parametrize("headers, problem", [
    ({"Transfer-Encoding": "chunked"}, "chunked"), ({"Content-Length": "x"}, "non-negative integer"),
    ({"Content-Length": str(MAX_BODY + 1)}, "too large"),
])
def test_bodies_refused(headers, problem) -> None:
    with pytest.raises(KeyServiceError) as e:
        body_length(headers)
    assert e.value.status == 400 and problem in e.value.body()["message"]


def test_body_lengths() -> None:
    assert body_length({}) == 0 and body_length({"Content-Length": "12"}) == 12


class Service:
    """A stand-in key service that records what it was asked and for whom."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def status(self, sae, slave):
        self.calls.append(("status", sae, slave))
        return {"slave_SAE_ID": slave}

    def enc_keys(self, sae, slave, body):
        self.calls.append(("enc_keys", sae, slave, body))
        return {"keys": []}

    def dec_keys(self, sae, master, body):
        self.calls.append(("dec_keys", sae, master, body))
        raise RuntimeError("a bug")


def test_call_asks_the_service_for_the_certificates_sae() -> None:
    svc = Service()
    assert call(svc, "sae-a1", "GET", Route("sae-b1", "status", ""), b"") == Reply(200, {"slave_SAE_ID": "sae-b1"})
    assert call(svc, "sae-a1", "GET", Route("sae-b1", "enc_keys", "number=2"), b"").status == 200
    assert call(svc, "sae-a1", "POST", Route("sae-b1", "enc_keys", ""), b'{"number": 1}').status == 200
    assert svc.calls == [("status", "sae-a1", "sae-b1"), ("enc_keys", "sae-a1", "sae-b1", {"number": 2}),
                         ("enc_keys", "sae-a1", "sae-b1", {"number": 1})]


@pytest.mark.parametrize("method, r, body, problem", [
    ("GET", Route("b", "status", "x=1"), b"", "no query parameters"),
    ("GET", Route("b", "enc_keys", "colour=red"), b"", "colour"),
    ("GET", Route("b", "enc_keys", "number=-1"), b"", "positive integer"),
    ("GET", Route("b", "enc_keys", "number=1&number=2"), b"", "more than once"),
    ("GET", Route("b", "enc_keys", ""), b"{}", "not in a body"),
    ("POST", Route("b", "enc_keys", "number=1"), b"", "not in the query"),
    ("POST", Route("b", "enc_keys", ""), b"{not json", "not valid JSON"),
    ("GET", Route("b", "dec_keys", ""), b"", "key_ID"),
])
def test_bad_requests_never_reach_the_service(method, r, body, problem) -> None:
    svc = Service()
    reply = call(svc, "sae-a1", method, r, body)
    assert reply.status == 400 and problem in reply.body["message"] and svc.calls == []


def test_a_bug_in_the_service_is_a_500_for_that_request(caplog) -> None:
    reply = call(Service(), "sae-b1", "POST", Route("sae-a1", "dec_keys", ""), b'{"key_IDs": []}')
    assert reply == Reply(500, {"message": "internal error in the KME"})
    assert "failed" in caplog.text and etsi014.log.name == "kms_agents.etsi014"


def test_an_answer_body_is_the_replys_json() -> None:
    import json
    body = {"keys": [{"key_ID": "01a2335c-a4c7-703a-a72f-97e2196b7723", "key": "AAEC",
                      "key_extension": {"qusec_hops": 2, "qusec_path": ["a", "b"]}}],
            "message": "café", "details": [{"n": 1}]}
    resp = etsi014._response(Reply(200, body))
    assert json.loads(resp.body.decode("utf-8")) == body
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert etsi014._response(Reply(401, None)).body == b""
