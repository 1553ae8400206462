"""The gateway's one error -> gRPC status mapping (rpc.maps_errors), on unary and streaming
methods, with the metrics it counts; and the caller's identity (rpc.peer_cn)."""
from __future__ import annotations

import grpc
import pytest
from google.rpc import status_pb2

from quseccontroller.bridge import BridgeError
from quseccontroller.gateway import rpc
from quseccontroller.gateway.metrics import Metrics
from quseccontroller.proto import control_pb2
from tests.helpers.agent_standin import unpack_details


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self, cn: str = "A"):
        self.cn, self.status = cn, None

    def abort_with_status(self, status):
        self.status = status
        raise Aborted()

    def peer(self):
        return "ipv4:127.0.0.1:1"

    def auth_context(self):
        return {"x509_common_name": [self.cn.encode()]} if self.cn else {}


def details(status) -> list:
    return unpack_details(status_pb2.Status.FromString(
        dict(status.trailing_metadata)["grpc-status-details-bin"]))


class Servicer:
    def __init__(self, error: Exception):
        self.metrics, self.error = Metrics(), error

    @rpc.maps_errors(count="refused", event="path_refused", describe=lambda r, c: f"src={r}")
    def Unary(self, request, context):
        raise self.error

    @rpc.maps_errors(count="rejected", event="stream_refused")
    def Stream(self, request, context):
        if request == "fail":
            raise self.error
        yield "a"
        yield "b"


def count(s: Servicer, metric: str, label: str) -> float:
    return s.metrics.registry.get_sample_value(f"qusec_{metric}_total", {"reason": label}) or 0.0


@pytest.mark.parametrize("error, code, label", [
    (rpc.PathRefused("no_key", "path A -> B refused (no_key): low", rule="r1", message="low"),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "no_key"),
    (rpc.PathRefused("something_new", "refused"), grpc.StatusCode.FAILED_PRECONDITION, "something_new"),
    (BridgeError("invalid", "dst_node: required", {"field": "dst_node"}),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    (BridgeError("unavailable", "controller app not connected"), grpc.StatusCode.UNAVAILABLE, "unavailable"),
    (rpc.bad_request("path_id", "required"), grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
])
def test_unary_errors_become_their_status_and_are_counted(error, code, label):
    s, ctx = Servicer(error), FakeContext()
    with pytest.raises(Aborted):
        s.Unary("A", ctx)
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
    assert list(s.Stream("ok", ctx)) == ["a", "b"] and ctx.status is None
    with pytest.raises(Aborted):
        list(s.Stream("fail", ctx))
    assert ctx.status.code == grpc.StatusCode.PERMISSION_DENIED
    assert count(s, "agent_streams_rejected", "permission_denied") == 1
    (info,) = details(ctx.status)
    assert info.reason == "NODE_ID_MISMATCH" and info.metadata["cn"] == "A"


def test_other_exceptions_are_not_mapped():
    s = Servicer(KeyError("bug"))
    with pytest.raises(KeyError):
        s.Unary("A", FakeContext())


def test_peer_cn():
    assert rpc.peer_cn(FakeContext("B")) == "B"
    assert rpc.peer_cn(FakeContext("")) == ""
