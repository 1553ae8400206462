"""The agent's control client against a small in-test QuSeCControl server (real gRPC, mutual TLS)."""
from __future__ import annotations

import queue
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from kms_agents.control_client import ControlClient, ControlSettings, PathRefused, Registration, crossed
from kms_agents.relay.authz import AuthTable
from kms_agents.relay.links import LinkState, LinkStatus
from kms_agents.relay.messages import Reason
from kms_agents.relay.plan import PathQuery
from quseccontroller.proto import control_pb2, control_pb2_grpc
from kms_agents.rpc import peer_identity
from tests.helpers.pki import make_ca, make_cert, write

pytestmark = pytest.mark.integration


class FakeQuSeC(control_pb2_grpc.QuSeCControlServicer):
    """Records what agents send; the test pushes controller messages through ``push``."""

    def __init__(self) -> None:
        self.received: "queue.Queue[tuple[str, control_pb2.AgentMessage]]" = queue.Queue()
        self.push: "queue.Queue[control_pb2.ControllerMessage]" = queue.Queue()
        self.path_delay = 0.0

    def Connect(self, request_iterator, context):
        cn = peer_identity(context).name
        first = next(request_iterator)
        if first.WhichOneof("body") != "register" or first.register.node_id != cn:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "register as your own node first")
        self.received.put((cn, first))
        yield control_pb2.ControllerMessage(registered=control_pb2.Registered(
            node_id=cn, report_interval_ms=300))

        def reader():
            try:
                for msg in request_iterator:
                    self.received.put((cn, msg))
            except grpc.RpcError:
                pass  # stream cancelled
        threading.Thread(target=reader, daemon=True).start()
        while context.is_active():
            try:
                yield self.push.get(timeout=0.05)
            except queue.Empty:
                pass

    def RequestPath(self, request, context):
        self.last_request = request
        time.sleep(self.path_delay)
        if request.dst_node == "Z":
            detail = any_pb2.Any()
            detail.Pack(control_pb2.PathRefusal(reason="policy_deny", rule="no-z",
                                                message="rule no-z denies A->Z"))
            context.abort_with_status(rpc_status.to_status(status_pb2.Status(
                code=code_pb2.PERMISSION_DENIED, message="rule no-z denies A->Z",
                details=[detail])))
        return control_pb2.PathReply(
            paths=[control_pb2.RelayPath(path_id="p1", hops=[
                control_pb2.Hop(node_id=request.src_node), control_pb2.Hop(node_id="B"),
                control_pb2.Hop(node_id=request.dst_node)])], security_level="qkd", rule="default")

    def ReleasePath(self, request, context):
        return control_pb2.ReleaseReply(released=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("pki")
    ca = make_ca()
    paths = {"ca": write(*ca, out, "ca")[0]}
    for cn, role in (("qusec", "controller"), ("A", "node"), ("B", "node")):
        paths[cn + ".pem"], paths[cn + ".key"] = write(*make_cert(ca, cn, role=role), out, cn)
    return paths


def serve(pki: dict[str, Path], fake: FakeQuSeC, port: int = 0, as_: str = "qusec") -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    control_pb2_grpc.add_QuSeCControlServicer_to_server(fake, server)
    creds = grpc.ssl_server_credentials(
        [(pki[f"{as_}.key"].read_bytes(), pki[f"{as_}.pem"].read_bytes())],
        root_certificates=pki["ca"].read_bytes(), require_client_auth=True)
    bound = server.add_secure_port(f"127.0.0.1:{port}", creds)
    server.start()
    return server, bound


def links_of(level: list[int]):
    return lambda: [LinkState(link_id="A-B", peer_node="B", skr_bps=1e6, stored_bits=level[0],
                              status=LinkStatus.ACTIVE)]


def client(pki, port, level, authz=None, **kw) -> ControlClient:
    settings = ControlSettings(target=f"127.0.0.1:{port}", ca_cert=pki["ca"], cert=pki["A.pem"],
                               key=pki["A.key"], backoff_initial_s=0.05, backoff_max_s=0.4,
                               poll_interval_s=0.05, **kw)
    reg = lambda: Registration(node_id="A", relay_addr="127.0.0.1:1", links=links_of(level)(),
                               saes=["sae-a"])
    return ControlClient(settings, register=reg, links=links_of(level), authz=authz if authz is not None else AuthTable())


def query(dst: str) -> PathQuery:
    return PathQuery(src_node="A", dst_node=dst, src_sae="sae-a", dst_sae="sae-x", key_size_bits=256,
                     key_count=1)


def wait_msg(fake: FakeQuSeC, kind: str, timeout: float = 5.0) -> control_pb2.AgentMessage:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            _, msg = fake.received.get(timeout=0.1)
        except queue.Empty:
            continue
        if msg.WhichOneof("body") == kind:
            return msg
    raise AssertionError(f"no {kind} message within {timeout} s")


def test_register_report_authorise_revoke(pki) -> None:
    fake = FakeQuSeC()
    server, port = serve(pki, fake)
    level = [100_000]
    authz = AuthTable()
    c = client(pki, port, level, authz)
    c.start()
    try:
        reg = wait_msg(fake, "register").register
        assert (reg.node_id, list(reg.saes), reg.links[0].link_id) == ("A", ["sae-a"], "A-B")
        assert c.registered.wait(5)
        # periodic report at the controller's interval (300 ms)
        rep = wait_msg(fake, "report").report
        assert rep.links[0].stored_bits == 100_000
        # threshold crossing (below 64 kbit) gives an early report flagged as such
        level[0] = 10_000
        rep = wait_msg(fake, "report", timeout=2).report
        while not rep.threshold_crossed:
            rep = wait_msg(fake, "report", timeout=2).report
        assert rep.links[0].stored_bits == 10_000
        # authorisation lands in the table and is acked
        fake.push.put(control_pb2.ControllerMessage(authorise=control_pb2.RelayAuthorisation(
            path_id="p1", prev_hop="", next_hop="B", src_node="A", dst_node="E",
            expires_unix_ms=int((time.time() + 60) * 1000))))
        ack = wait_msg(fake, "auth_ack").auth_ack
        assert ack.path_id == "p1" and authz.get("p1").next_hop == "B"
        fake.push.put(control_pb2.ControllerMessage(revoke=control_pb2.Revocation(
            path_id="p1", reason="link down")))
        deadline = time.monotonic() + 5
        while authz.get("p1") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert authz.get("p1") is None
    finally:
        c.stop()
        server.stop(0)


def test_reconnects_and_reregisters_after_controller_restart(pki) -> None:
    fake = FakeQuSeC()
    server, port = serve(pki, fake)
    authz = AuthTable()
    c = client(pki, port, [100_000], authz)
    c.start()
    try:
        assert c.registered.wait(5)
        fake.push.put(control_pb2.ControllerMessage(authorise=control_pb2.RelayAuthorisation(
            path_id="old", src_node="A", dst_node="E", next_hop="B",
            expires_unix_ms=int((time.time() + 60) * 1000))))
        wait_msg(fake, "auth_ack")
        assert len(authz) == 1
        server.stop(0).wait()
        deadline = time.monotonic() + 5
        while c.registered.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not c.registered.is_set(), "client did not notice the controller went away"
        time.sleep(0.5)  # a few failed attempts, bounded back-off keeps them cheap
        fake2 = FakeQuSeC()
        server, _ = serve(pki, fake2, port)
        t0 = time.monotonic()
        assert c.registered.wait(5), "client did not re-register"
        assert time.monotonic() - t0 < 2.0  # back-off bounded at 0.4 s (+ TLS handshake)
        assert wait_msg(fake2, "register").register.node_id == "A"
        assert c.registrations == 2
        assert len(c.authz) == 0  # the old session's authorisations are not trusted any more
    finally:
        c.stop()
        server.stop(0)


def test_node_cannot_pose_as_qusec_to_an_agent(pki) -> None:
    # B's certificate is issued by the same CA and names 127.0.0.1, where QuSeC listens on a
    # loopback network: the agent's channel pins the name "qusec", which only QuSeC's carries
    fake = FakeQuSeC()
    server, port = serve(pki, fake, as_="B")
    c = client(pki, port, [100_000])
    c.start()
    try:
        assert not c.registered.wait(1.5)
        assert fake.received.empty()               # not even the Register left the agent
        with pytest.raises(PathRefused) as info:
            c.request_path(query("E"), timeout=1.0)
        assert info.value.reason in (Reason.UNREACHABLE, Reason.TIMEOUT)
    finally:
        c.stop()
        server.stop(0)
    fake = FakeQuSeC()
    server, port = serve(pki, fake)                # the controller's own certificate
    c = client(pki, port, [100_000])
    c.start()
    try:
        assert c.registered.wait(5)
    finally:
        c.stop()
        server.stop(0)


def test_register_reports_what_this_end_sees_for_the_peer(pki) -> None:
    fake = FakeQuSeC()
    server, port = serve(pki, fake)
    settings = ControlSettings(target=f"127.0.0.1:{port}", ca_cert=pki["ca"], cert=pki["A.pem"],
                               key=pki["A.key"], backoff_initial_s=0.05, backoff_max_s=0.4, poll_interval_s=0.05)
    links = lambda: [LinkState(link_id="A-B", peer_node="B", skr_bps=1e6, stored_bits=800,  # noqa: E731
                               peer_stored_bits=640)]
    reg = lambda: Registration(node_id="A", relay_addr="127.0.0.1:1", links=links(), saes=["sae-a"])  # noqa: E731
    c = ControlClient(settings, register=reg, links=links, authz=AuthTable())
    c.start()
    try:
        assert wait_msg(fake, "register").register.links[0].peer_stored_bits == 640
        assert wait_msg(fake, "report").report.links[0].peer_stored_bits == 640
        reply = c.request_path(PathQuery(src_node="A", dst_node="E", src_sae="sae-a", dst_sae="sae-x",
                                         key_size_bits=256, key_count=1, dst_saes=("sae-x", "sae-y")))
        assert reply.paths and list(fake.last_request.dst_saes) == ["sae-x", "sae-y"]
    finally:
        c.stop()
        server.stop(0)


def test_request_path_reply_refusal_and_deadline(pki) -> None:
    fake = FakeQuSeC()
    server, port = serve(pki, fake)
    c = client(pki, port, [100_000], path_deadline_s=0.5)
    try:
        reply = c.request_path(query("E"))
        assert [h.node_id for h in reply.paths[0].hops] == ["A", "B", "E"]
        with pytest.raises(PathRefused) as info:
            c.request_path(query("Z"))
        assert info.value.reason == Reason.DENIED
        assert (info.value.refusal, info.value.rule) == ("policy_deny", "no-z")
        assert "rule no-z denies A->Z" in str(info.value)
        fake.path_delay = 1.0
        t0 = time.monotonic()
        with pytest.raises(PathRefused) as info:
            c.request_path(query("E"))
        assert info.value.reason == Reason.TIMEOUT
        assert time.monotonic() - t0 < 0.9
        assert c.release_path("p1") is True
    finally:
        c.stop()
        server.stop(0)


def test_controller_down_gives_unavailable_not_a_hang(pki, tmp_path) -> None:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = client(pki, port, [1], path_deadline_s=1.0)
    try:
        with pytest.raises(PathRefused) as info:
            c.request_path(query("E"))
        assert info.value.reason in (Reason.UNREACHABLE, Reason.TIMEOUT)
    finally:
        c.stop()


def test_threshold_bands() -> None:
    t = (100, 1000)
    assert crossed({"l": 50}, {"l": 99}, t) == []
    assert crossed({"l": 50}, {"l": 100}, t) == ["l"]
    assert crossed({"l": 5000}, {"l": 999}, t) == ["l"]
    assert crossed({"l": 1}, {"l": 1, "m": 1}, t) == ["m"]
    assert crossed({"l": 1, "m": 1}, {"l": 1}, t) == ["m"]
