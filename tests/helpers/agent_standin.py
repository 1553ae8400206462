"""A minimal vKMS stand-in for controller tests: a real gRPC client on the control stream."""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import grpc
from grpc_status import rpc_status

from quseccontroller.proto import control_pb2, control_pb2_grpc


def channel(addr: str, ca: str, cert: str | None = None, key: str | None = None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(Path(ca).read_bytes(),
                                         Path(key).read_bytes() if key else None,
                                         Path(cert).read_bytes() if cert else None)
    return grpc.secure_channel(addr, creds)


def unpack_details(st) -> list:
    """The details of a google.rpc.Status (None: none), unpacked to their message types."""
    from google.rpc import error_details_pb2
    out = []
    for d in st.details if st else []:
        for cls in (control_pb2.PathRefusal, error_details_pb2.BadRequest, error_details_pb2.ErrorInfo):
            if d.Is(cls.DESCRIPTOR):
                m = cls()
                d.Unpack(m)
                out.append(m)
    return out


def status_details(err: grpc.RpcError) -> list:
    """The google.rpc.Status details of a gRPC error, unpacked to their message types."""
    return unpack_details(rpc_status.from_call(err))


def link(link_id: str, peer: str, stored_bits: int = 10**8, status: int = control_pb2.LINK_STATUS_ACTIVE,
         skr: float = 1e6, peer_stored_bits: int = 0) -> control_pb2.QkdLinkState:
    return control_pb2.QkdLinkState(link_id=link_id, peer_node=peer, skr_bps=skr,
                                    stored_bits=stored_bits, status=status, kms_kind="simulated",
                                    peer_stored_bits=peer_stored_bits)


class TestAgent:
    """Opens Connect, registers, acks authorisations (unless told not to), records messages."""

    __test__ = False

    def __init__(self, addr: str, ca: str, cert: str, key: str, node_id: str, *,
                 data_ip: str = "", relay_port: int = 7000, links: list | None = None,
                 saes: list[str] | None = None, ack: bool = True):
        self.node_id = node_id
        self.channel = channel(addr, ca, cert, key)
        self.stub = control_pb2_grpc.QuSeCControlStub(self.channel)
        self.ack = ack
        self.out: queue.Queue = queue.Queue()
        self.received: list[control_pb2.ControllerMessage] = []
        self.authorised: dict[str, control_pb2.RelayAuthorisation] = {}
        self.revoked: dict[str, str] = {}
        self.error: grpc.RpcError | None = None
        self.registered = threading.Event()
        self.closed = threading.Event()
        self.register = control_pb2.Register(
            node_id=node_id, relay_addr=f"{data_ip or '127.0.0.1'}:{relay_port}",
            etsi014_url=f"https://{data_ip or '127.0.0.1'}:8443", etsi004_addr=f"{data_ip or '127.0.0.1'}:9004",
            data_ip=data_ip, trust_level=3, links=links or [], saes=saes or [f"sae-{node_id}"],
            agent_version="test")
        self._call = None

    def _requests(self):
        while True:
            msg = self.out.get()
            if msg is None:
                return
            yield msg

    def connect(self, first: control_pb2.AgentMessage | None = None, timeout: float = 10) -> "TestAgent":
        self.out.put(first or control_pb2.AgentMessage(register=self.register))
        self._call = self.stub.Connect(self._requests())
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (self.registered.is_set() or self.closed.is_set()):
            time.sleep(0.01)
        return self

    def _read(self):
        try:
            for msg in self._call:
                self.received.append(msg)
                kind = msg.WhichOneof("body")
                if kind == "registered":
                    self.registered.set()
                elif kind == "authorise":
                    self.authorised[msg.authorise.path_id] = msg.authorise
                    if self.ack:
                        self.out.put(control_pb2.AgentMessage(
                            auth_ack=control_pb2.AuthorisationAck(path_id=msg.authorise.path_id)))
                elif kind == "revoke":
                    self.revoked[msg.revoke.path_id] = msg.revoke.reason
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            self.closed.set()

    def report(self, links: list) -> None:
        self.out.put(control_pb2.AgentMessage(report=control_pb2.LinkReport(links=links)))

    def wait_closed(self, timeout: float = 10) -> grpc.RpcError | None:
        """The error that ended the stream (None: still open after ``timeout``, or ended OK)."""
        self.closed.wait(timeout)
        return self.error

    def request_path(self, dst: str, timeout: float = 10, **kw) -> control_pb2.PathReply:
        return self.stub.RequestPath(control_pb2.PathRequest(src_node=self.node_id, dst_node=dst,
                                                             key_size_bits=256, key_count=1, **kw),
                                     timeout=timeout)

    def request_path_with_call(self, dst: str, timeout: float = 10):
        return self.stub.RequestPath.with_call(control_pb2.PathRequest(
            src_node=self.node_id, dst_node=dst, key_size_bits=256, key_count=1), timeout=timeout)

    def close(self) -> None:
        self.out.put(None)
        if self._call is not None:
            self._call.cancel()
        self.channel.close()
