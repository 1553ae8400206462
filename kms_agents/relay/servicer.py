"""The KeyRelay gRPC service: relay.proto in -> the hop receiver -> relay.proto out."""
from __future__ import annotations

import logging

import grpc

from kms_agents import rpc
from kms_agents.proto import relay_pb2, relay_pb2_grpc
from kms_agents.relay import wire
from kms_agents.relay.hop import HopReceiver
from kms_agents.relay.messages import RelayFailure

log = logging.getLogger(__name__)


def _status(servicer: KeyRelayServicer, exc: Exception, peer: str) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, RelayFailure):
        log.warning("relay from %s refused: %s: %s", peer, exc.reason.value, exc.message)
        return wire.status_of(exc.reason), exc.message
    # keep serving; the caller gets a status, not a hang
    log.exception("relay from %s failed", peer)
    return grpc.StatusCode.INTERNAL, f"node {servicer.receiver.node_id}: {exc}"


class KeyRelayServicer(relay_pb2_grpc.KeyRelayServicer):
    """Thin adapter; the calling node is the one its client certificate names (role node only)."""

    def __init__(self, receiver: HopReceiver) -> None:
        self.receiver = receiver

    @rpc.method(_status, role="node", server="relay", unauthenticated="relay needs a client certificate")
    def Relay(self, request: relay_pb2.RelayRequest, peer: str) -> relay_pb2.RelayAck:
        return wire.ack_to_proto(self.receiver.handle_relay(wire.message_of(request), peer))

    @rpc.method(_status, role="node", server="relay", unauthenticated="relay needs a client certificate")
    def Void(self, request: relay_pb2.VoidRequest, peer: str) -> relay_pb2.RelayAck:
        return wire.ack_to_proto(self.receiver.handle_void(wire.void_of(request), peer))
