"""The agent's management API (manage.proto ``qusec.manage.v1.Manage``): operator-only changes.

Served on the node-to-node gRPC server (mutual TLS); every method needs an operator
certificate (``urn:qusec:operator:NAME``): a node, SAE or other certificate is refused
PERMISSION_DENIED, one without an identity UNAUTHENTICATED (``kms_agents.rpc.method``).

``SetLinkFault`` sets one link end's fault (``kms_agents.qkd_module.LinkFault``: down, up, or a
QBER) and has the change reported to QuSeC at once (``on_change``); ``GetLinkFaults`` lists
every link end's. The caller sets both ends of a link (``qkdnet qlink`` does): each module sees
the shared quantum channel's fault on its own, and one node never tells another to stop. Also
a client (:class:`ManageClient`) for tools.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from kms_agents import rpc
from kms_agents.keysource import FaultsNotSupported, KeySource
from kms_agents.qkd_module import LinkFault
from kms_agents.proto import manage_pb2 as pb
from kms_agents.proto import manage_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_STATE_OF = {pb.FAULT_STATE_UP: "up", pb.FAULT_STATE_DOWN: "down", pb.FAULT_STATE_QBER: "qber"}
_PROTO_OF = {v: k for k, v in _STATE_OF.items()}


def fault_of(request: pb.SetLinkFaultRequest) -> LinkFault:
    """The fault a request asks for (ValueError naming what is wrong)."""
    state = _STATE_OF.get(request.state)
    if state is None:
        raise ValueError("state: one of FAULT_STATE_UP, FAULT_STATE_DOWN, FAULT_STATE_QBER is required")
    if state != "qber" and request.qber:
        raise ValueError(f"qber is given with FAULT_STATE_QBER only, not with {state}")
    return LinkFault(state, float(request.qber)) if state == "qber" else LinkFault(state)


def fault_to_proto(src: KeySource) -> pb.LinkFault:
    fault = src.fault()
    return pb.LinkFault(link_id=src.link_id, peer_node=src.peer_node, state=_PROTO_OF[fault.state],
                        qber=fault.qber if fault.state == "qber" else 0.0, alarm=fault.alarm,
                        skr_bps=float(src.rate_bps),
                        nominal_skr_bps=float(getattr(src, "nominal_rate_bps", src.rate_bps)),
                        kms_kind=getattr(src, "kind", ""))


def _errors(_servicer: object, exc: Exception, _caller: str) -> tuple[grpc.StatusCode, str] | None:
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, FaultsNotSupported):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    return None


class ManageServicer(pb_grpc.ManageServicer):
    """Link faults of this node's link ends, for operators only."""

    def __init__(self, node_id: str, links: Sequence[KeySource],
                 on_change: Callable[[], None] | None = None) -> None:
        self.node_id = node_id
        self._links = links
        self._on_change = on_change

    def _link(self, link_id: str) -> KeySource:
        src = next((lk for lk in self._links if lk.link_id == link_id), None)
        if src is None:
            raise ValueError(f"node {self.node_id} has no link {link_id!r} (its links: "
                             + (", ".join(lk.link_id for lk in self._links) or "none") + ")")
        return src

    @rpc.method(_errors, role="operator", server="manage")
    def SetLinkFault(self, request: pb.SetLinkFaultRequest, operator: str) -> pb.LinkFault:
        src = self._link(request.link_id)
        fault = fault_of(request)
        old = src.set_fault(fault)
        log.warning("event=link_fault link=%s node=%s operator=%s state=%s qber=%g alarm=%s was=%s",
                    src.link_id, self.node_id, operator, fault.state, fault.qber, fault.alarm or "-",
                    old.state)
        if self._on_change is not None:
            self._on_change()
        return fault_to_proto(src)

    @rpc.method(_errors, role="operator", server="manage")
    def GetLinkFaults(self, request: pb.GetLinkFaultsRequest, operator: str) -> pb.LinkFaults:
        return pb.LinkFaults(links=[fault_to_proto(lk) for lk in self._links])


class ManageError(Exception):
    """A management call failed (one line: the agent, the code and its message)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class ManageClient:
    """Calls one agent's Manage service as the operator whose certificate is given."""

    def __init__(self, target: str, ca_cert: str | Path, cert: str | Path, key: str | Path, *,
                 timeout: float = 5.0) -> None:
        self.target, self.timeout = target, timeout
        creds = rpc.channel_credentials(ca_cert, cert, key)
        self._channel = grpc.secure_channel(target, creds)
        self._stub = pb_grpc.ManageStub(self._channel)

    def _call(self, fn: Callable, request: object) -> object:
        try:
            return fn(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise ManageError(f"agent at {self.target}: {exc.code().name}: {exc.details()}",
                              exc.code()) from None

    def set_fault(self, link_id: str, state: str, qber: float = 0.0) -> pb.LinkFault:
        if state not in _PROTO_OF:
            raise ValueError(f"fault state must be one of {', '.join(_PROTO_OF)}, got {state!r}")
        return self._call(self._stub.SetLinkFault, pb.SetLinkFaultRequest(
            link_id=link_id, state=_PROTO_OF[state], qber=qber if state == "qber" else 0.0))

    def faults(self) -> list[pb.LinkFault]:
        return list(self._call(self._stub.GetLinkFaults, pb.GetLinkFaultsRequest()).links)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ManageClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
