"""The one error-to-status mapping of the agent's servicers (the caller's identity and role first),
and the channel pool's addresses (no sockets)."""
from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

import grpc
import pytest

from kms_agents import rpc
from kms_agents.channels import PeerChannels, PeerUnavailable
from kms_agents.config import PeerConfig
from kms_agents.etsi004 import Etsi004Servicer, StreamError
from kms_agents.keysource import KeySourceError
from kms_agents.keystore import DuplicateKey
from kms_agents.peers import PeerServicer
from kms_agents.proto import peer_pb2, relay_pb2
from kms_agents.relay.messages import Reason, RelayFailure
from kms_agents import metrics
from kms_agents.relay.servicer import KeyRelayServicer
from tests.helpers.pki import make_ca, make_cert

CA = make_ca()


@functools.lru_cache(maxsize=None)
def pem(name: str, role: str) -> bytes:
    """A certificate naming ``role:name`` (role "none": no urn:qusec identity at all)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    if role != "none":
        return make_cert(CA, name, role=role)[0].public_bytes(serialization.Encoding.PEM)
    import datetime as dt
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(CA[0].subject)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(CA[1], hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


class Aborted(Exception):
    pass


class Context:
    """Just what the servicers use of grpc.ServicerContext: the verified client certificate."""

    def __init__(self, cn: str = "B", role: str = "node") -> None:
        self._auth = {"x509_pem_cert": [pem(cn, role)]} if cn else {}
        self.status: tuple[grpc.StatusCode, str] | None = None

    def auth_context(self) -> dict:
        return self._auth

    def abort(self, code: grpc.StatusCode, message: str) -> None:
        self.status = (code, message)
        raise Aborted


class AioContext(Context):
    async def abort(self, code: grpc.StatusCode, message: str) -> None:
        super().abort(code, message)


def status(method, request, cn: str = "B", role: str = "node") -> tuple[grpc.StatusCode, str]:
    if asyncio.iscoroutinefunction(method):
        ctx = AioContext(cn, role)
        with pytest.raises(Aborted):
            asyncio.run(method(request, ctx))
        return ctx.status
    ctx = Context(cn, role)
    with pytest.raises(Aborted):
        method(request, ctx)
    return ctx.status


class Raising:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.node_id = "C"

    def __call__(self, *args, **kwargs):
        raise self.exc

    accept_direct = handle_relay = handle_void = open_connect = get_key = close = __call__


def test_caller_is_the_certificate_identity_of_the_expected_role() -> None:
    seen = []

    class Svc:
        @rpc.method(role="node", server="relay", unauthenticated="who are you?")
        def Call(self, request, caller):
            seen.append((request, caller))
            return "ok"

    assert Svc().Call("req", Context("A")) == "ok" and seen == [("req", "A")]
    assert status(Svc().Call, "req", cn="") == (grpc.StatusCode.UNAUTHENTICATED, "who are you?")
    before = metrics.refusals("relay", "no_identity")
    assert status(Svc().Call, "req", cn="A", role="none") == (
        grpc.StatusCode.UNAUTHENTICATED, "who are you?: the client certificate names no urn:qusec: identity")
    assert metrics.refusals("relay", "no_identity") == before + 1
    before = metrics.refusals("relay", "wrong_role")
    # an SAE certificate whose name is a node id is still not a node
    assert status(Svc().Call, "req", cn="A", role="sae") == (
        grpc.StatusCode.PERMISSION_DENIED, "KeyRelay needs a node certificate; the caller's certificate names sae:A")
    assert metrics.refusals("relay", "wrong_role") == before + 1
    assert seen == [("req", "A")]


def test_identity_is_read_from_the_certificate() -> None:
    ident = rpc.peer_identity(Context("A", "node"))
    assert (ident.role, ident.name, ident.addresses, str(ident)) == ("node", "A", ("127.0.0.1",), "node:A")
    assert rpc.peer_identity(Context("sae-a", "sae")).role == "sae"
    assert rpc.peer_identity(Context("A", "none")) is None and rpc.peer_identity(Context("")) is None


def test_abort_mapped_and_unmapped_errors() -> None:
    def errors(_svc, exc, _caller):
        return (grpc.StatusCode.INVALID_ARGUMENT, f"bad: {exc}") if isinstance(exc, ValueError) else None

    class Svc:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        @rpc.method(errors, role="node", server="relay")
        def Call(self, request, caller):
            raise self.exc

    assert status(Svc(rpc.Abort(grpc.StatusCode.NOT_FOUND, "gone")).Call, None) == \
        (grpc.StatusCode.NOT_FOUND, "gone")
    assert status(Svc(ValueError("x")).Call, None) == (grpc.StatusCode.INVALID_ARGUMENT, "bad: x")
    with pytest.raises(KeyError):   # not mapped: gRPC answers UNKNOWN
        Svc(KeyError("bug")).Call(None, Context())


@pytest.mark.parametrize("exc, code", [(ValueError("wrong link"), grpc.StatusCode.INVALID_ARGUMENT),
                                       (DuplicateKey("k"), grpc.StatusCode.ALREADY_EXISTS),
                                       (KeySourceError("vendor down"), grpc.StatusCode.FAILED_PRECONDITION)])
def test_peer_kms_errors(exc: Exception, code: grpc.StatusCode) -> None:
    svc = PeerServicer(Raising(exc))
    assert status(svc.DeliverDirect, peer_pb2.DirectDelivery()) == (code, str(exc))
    assert status(svc.DeliverDirect, peer_pb2.DirectDelivery(), cn="") == \
        (grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
    assert status(svc.DeliverDirect, peer_pb2.DirectDelivery(), cn="B", role="sae")[0] == \
        grpc.StatusCode.PERMISSION_DENIED


def test_peer_kms_stream_events() -> None:
    assert status(PeerServicer(None).StreamEvent, peer_pb2.StreamEventRequest()) == \
        (grpc.StatusCode.UNIMPLEMENTED, "key streams are not served here")
    assert status(PeerServicer(None, Raising(ValueError("not a neighbour"))).StreamEvent,
                  peer_pb2.StreamEventRequest()) == (grpc.StatusCode.INVALID_ARGUMENT, "not a neighbour")


def test_key_relay_errors() -> None:
    req = relay_pb2.VoidRequest(path_id="p", key_id="k", from_node="B")
    svc = KeyRelayServicer(Raising(RelayFailure(Reason.DENIED, "node C: no authorisation")))
    assert status(svc.Void, req) == (grpc.StatusCode.PERMISSION_DENIED, "node C: no authorisation")
    assert status(KeyRelayServicer(Raising(KeyError("bug"))).Void, req) == \
        (grpc.StatusCode.INTERNAL, "node C: 'bug'")
    assert status(svc.Void, req, cn="") == (grpc.StatusCode.UNAUTHENTICATED,
                                            "relay needs a client certificate")
    assert status(svc.Relay, relay_pb2.RelayRequest(), cn="B", role="controller") == (
        grpc.StatusCode.PERMISSION_DENIED, "KeyRelay needs a node certificate; the caller's certificate names "
                                           "controller:B")
    assert status(svc.Relay, relay_pb2.RelayRequest(version="qusec-relay/0"))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT


class AsyncRaising(Raising):
    async def __call__(self, *args, **kwargs):
        raise self.exc

    open_connect = get_key = close = __call__


def test_etsi004_errors() -> None:
    svc = Etsi004Servicer(AsyncRaising(StreamError(grpc.StatusCode.OUT_OF_RANGE, "already delivered")))
    assert status(svc.GetKey, None, cn="sae-a", role="sae") == (grpc.StatusCode.OUT_OF_RANGE, "already delivered")
    assert status(svc.Close, None, cn="") == (grpc.StatusCode.UNAUTHENTICATED,
                                              "a client certificate naming the SAE is required")
    # a node certificate is not an SAE
    assert status(svc.GetKey, None, cn="A", role="node") == (
        grpc.StatusCode.PERMISSION_DENIED, "the ETSI 004 API needs an SAE certificate; the caller's certificate "
                                           "names node:A")


def test_channel_pool_rereads_a_moved_neighbour(tmp_path: Path) -> None:
    doc = tmp_path / "agent.json"
    doc.write_text(json.dumps({"relay_addr": "127.0.0.1:1001"}))
    pool = PeerChannels(grpc.ssl_channel_credentials(),
                        {"B": PeerConfig("B", agent_json=str(doc)), "C": PeerConfig("C", relay_addr="127.0.0.1:9")})
    try:
        assert pool.address("C") == "127.0.0.1:9" and pool.address("B") == "127.0.0.1:1001"
        first = pool.peer_kms("B")
        assert pool.peer_kms("B") is first                      # cached
        assert pool.key_relay("B", "127.0.0.1:1001") is pool._channels[("B", "127.0.0.1:1001")].key_relay
        doc.write_text(json.dumps({"relay_addr": "127.0.0.1:1002"}))
        assert pool.peer_kms("B") is first                      # not re-read until asked to
        assert pool.peer_kms("B", refresh=True) is not first
        assert set(pool._channels) == {("B", "127.0.0.1:1002")}  # the old channel closed
        with pytest.raises(PeerUnavailable, match="not a configured neighbour"):
            pool.peer_kms("Z")
        doc.unlink()
        with pytest.raises(PeerUnavailable, match="no usable agent.json"):
            pool.peer_kms("B", refresh=True)
    finally:
        pool.close()
