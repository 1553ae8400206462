"""The gateway's one error -> gRPC status mapping (rpc.maps_errors), on unary and streaming
(asyncio) methods, with the metrics it counts; and the caller's identity (rpc.peer_identity,
rpc.require_role) read from the verified certificate."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from google.rpc import status_pb2

from quseccontroller import identity
from quseccontroller.bridge import BridgeError
from quseccontroller.gateway import rpc
from quseccontroller.gateway.metrics import Metrics
from quseccontroller.proto import control_pb2
from tests.helpers.agent_standin import unpack_details
from tests.helpers.pki import make_ca, make_cert


class Aborted(Exception):
    pass


CA = make_ca()


def pem(cn: str, role: str = "node") -> bytes:
    return make_cert(CA, cn, role=role)[0].public_bytes(serialization.Encoding.PEM)


class FakeContext:
    """What grpc.aio hands a servicer: auth context (the verified certificate), abort."""

    def __init__(self, cert: bytes | None = None):
        self.cert, self.status = cert, None

    async def abort(self, code, details="", trailing_metadata=()):
        self.status = SimpleNamespace(code=code, details=details, trailing_metadata=trailing_metadata)
        raise Aborted()

    def peer(self):
        return "ipv4:127.0.0.1:1"

    def auth_context(self):
        return {"x509_pem_cert": [self.cert]} if self.cert else {}


def details(status) -> list:
    return unpack_details(status_pb2.Status.FromString(
        dict(status.trailing_metadata)["grpc-status-details-bin"]))


class Servicer:
    def __init__(self, error: Exception):
        self.metrics, self.error = Metrics(), error

    @rpc.maps_errors(count="refused", event="path_refused", describe=lambda r, c: f"src={r}")
    async def Unary(self, request, context):
        raise self.error

    @rpc.maps_errors(count="rejected", event="stream_refused")
    async def Stream(self, request, context):
        if request == "fail":
            raise self.error
        yield "a"
        yield "b"


def count(s: Servicer, metric: str, label: str) -> float:
    return s.metrics.registry.get_sample_value(f"qusec_{metric}_total", {"reason": label}) or 0.0


async def collect(agen) -> list:
    return [x async for x in agen]


@pytest.mark.parametrize("error, code, label", [
    (rpc.PathRefused("no_key", "path A -> B refused (no_key): low", rule="r1", message="low"),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "no_key"),
    (rpc.PathRefused("something_new", "refused"), grpc.StatusCode.FAILED_PRECONDITION, "something_new"),
    (rpc.PathRefused("unknown_sae", "refused"), grpc.StatusCode.NOT_FOUND, "unknown_sae"),
    (BridgeError("invalid", "dst_node: required", {"field": "dst_node"}),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    (BridgeError("unavailable", "controller app not connected"), grpc.StatusCode.UNAVAILABLE, "unavailable"),
    (rpc.bad_request("path_id", "required"), grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
])
def test_unary_errors_become_their_status_and_are_counted(error, code, label):
    s, ctx = Servicer(error), FakeContext()
    with pytest.raises(Aborted):
        asyncio.run(s.Unary("A", ctx))
    assert ctx.status.code == code and count(s, "paths_refused", label) == 1
    found = details(ctx.status)
    if isinstance(error, rpc.PathRefused):
        assert found == [control_pb2.PathRefusal(reason=error.reason, rule=error.rule, message=error.message)]
        assert ctx.status.details == error.summary
    if isinstance(error, BridgeError):
        assert found[0].reason == error.code.upper() and found[0].domain == "qusec"
        if "field" in error.details:
            assert found[1].field_violations[0].field == "dst_node"


def test_streaming_errors_end_the_stream_and_count_as_rejected():
    s = Servicer(rpc.error_info(grpc.StatusCode.PERMISSION_DENIED, "no", "NODE_ID_MISMATCH", cn="A"))
    ctx = FakeContext()
    assert asyncio.run(collect(s.Stream("ok", ctx))) == ["a", "b"] and ctx.status is None
    with pytest.raises(Aborted):
        asyncio.run(collect(s.Stream("fail", ctx)))
    assert ctx.status.code == grpc.StatusCode.PERMISSION_DENIED
    assert count(s, "agent_streams_rejected", "permission_denied") == 1
    (info,) = details(ctx.status)
    assert info.reason == "NODE_ID_MISMATCH" and info.metadata["cn"] == "A"


def test_a_label_names_the_refusal_in_the_metric():
    s = Servicer(rpc.error_info(grpc.StatusCode.PERMISSION_DENIED, "no", "ROLE_NOT_ALLOWED", label="role"))
    with pytest.raises(Aborted):
        asyncio.run(collect(s.Stream("fail", FakeContext())))
    assert count(s, "agent_streams_rejected", "role") == 1


def test_other_exceptions_are_not_mapped():
    s = Servicer(KeyError("bug"))
    with pytest.raises(KeyError):
        asyncio.run(s.Unary("A", FakeContext()))


def test_peer_identity_is_the_certificates_urn():
    ident = rpc.peer_identity(FakeContext(pem("B")))
    assert (ident.role, ident.name, ident.addresses, str(ident)) == ("node", "B", ("127.0.0.1",), "node:B")
    assert rpc.require_role(FakeContext(pem("B")), "node", "do it") == ident


@pytest.mark.parametrize("role", ["sae", "operator", "controller", "switch"])
def test_another_role_is_refused(role):
    with pytest.raises(rpc.Abort) as err:
        rpc.require_role(FakeContext(pem("sae-c", role)), "node", "open a control stream")
    a = err.value
    assert a.code == grpc.StatusCode.PERMISSION_DENIED and a.label == "role"
    assert f"a {role} certificate ({role}:sae-c) may not open a control stream" in a.message
    (info,) = a.details
    assert info.reason == "ROLE_NOT_ALLOWED" and dict(info.metadata) == {
        "role": role, "name": "sae-c", "required": "node"}


def cert_with_uris(*uris: str) -> bytes:
    """A certificate of the test CA whose names are a CN and ``uris`` (none: no SAN at all)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "A")]))
         .issuer_name(CA[0].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if uris:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
    return b.sign(CA[1], hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_no_certificate_or_no_identity_is_unauthenticated():
    with pytest.raises(rpc.Abort) as err:
        rpc.peer_identity(FakeContext(None))
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED and err.value.label == "no_identity"
    # A certificate of the right CA whose only name is a CN A names nobody (CN is not identity).
    with pytest.raises(rpc.Abort) as err:
        rpc.peer_identity(FakeContext(cert_with_uris()))
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "no subject alternative names" in err.value.message


@pytest.mark.parametrize("uris, problem", [
    (("urn:qusec:node:A", "urn:qusec:operator:A"), "carries 2 urn:qusec:ROLE:NAME URIs"),
    (("https://example.org/A",), "carries 0 urn:qusec:ROLE:NAME URIs"),
    (("urn:qusec:admin:A",), "is not urn:qusec:ROLE:NAME with ROLE one of"),
    (("urn:qusec:node:",), "is not urn:qusec:ROLE:NAME"),
])
def test_a_certificate_names_exactly_one_identity(uris, problem):
    with pytest.raises(identity.NoIdentity, match=problem):
        identity.from_pem(cert_with_uris(*uris))


def test_identity_addresses_are_the_ip_sans():
    cert = pem("A")
    ident = identity.from_pem(cert)
    assert ident.has_address("127.0.0.1") and not ident.has_address("10.0.0.1")
    assert not ident.has_address("localhost") and not ident.has_address("")
    assert identity.from_pem(cert) is ident   # parsed once per certificate
