"""PeerKms between neighbour vKMSs: the client (direct-link delivery, key-stream events) and the servicer."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from kms_agents import rpc
from kms_agents.channels import PeerChannels, PeerUnavailable
from kms_agents.keysource import KeySourceError
from kms_agents.keystore import DuplicateKey
from kms_agents.proto import peer_pb2 as pb
from kms_agents.proto import peer_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from kms_agents.delivery import KeyDelivery

CALL_TIMEOUT_S = 5.0


class PeerClient:
    """Calls a neighbour's PeerKms over the agent's channel pool (delivery.PeerNotifier)."""

    def __init__(self, channels: PeerChannels) -> None:
        self.channels = channels

    def call(self, node: str, fn: Callable[[pb_grpc.PeerKmsStub], Any]) -> Any:
        """Run ``fn(stub)``; on UNAVAILABLE re-resolve the address once (the peer may have restarted)."""
        try:
            return fn(self.channels.peer_kms(node))
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise PeerUnavailable(f"node {node}: {exc.code().name}: {exc.details()}") from exc
        try:
            return fn(self.channels.peer_kms(node, refresh=True))
        except grpc.RpcError as exc:
            raise PeerUnavailable(f"node {node}: {exc.code().name}: {exc.details()}") from exc

    def deliver_direct(self, peer_node: str, link_id: str, master_sae: str, slave_saes: list[str],
                       keys: list[tuple[str, list[str], int]], extensions: dict[str, str]) -> None:
        req = pb.DirectDelivery(link_id=link_id, master_sae_id=master_sae, slave_sae_ids=slave_saes,
                                keys=[pb.DirectKey(key_id=k, link_key_ids=ids, size_bits=bits)
                                      for k, ids, bits in keys],
                                extensions={k: str(v) for k, v in extensions.items()})
        self.call(peer_node, lambda stub: stub.DeliverDirect(req, timeout=CALL_TIMEOUT_S))

    def stream_event(self, peer_node: str, req: pb.StreamEventRequest) -> pb.StreamEventReply:
        return self.call(peer_node, lambda stub: stub.StreamEvent(req, timeout=CALL_TIMEOUT_S))


def _delivery_errors(_servicer: Any, exc: Exception, _node: str) -> tuple[grpc.StatusCode, str] | None:
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, DuplicateKey):
        return grpc.StatusCode.ALREADY_EXISTS, str(exc)
    if isinstance(exc, KeySourceError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    return None


def _event_errors(_servicer: Any, exc: Exception, _node: str) -> tuple[grpc.StatusCode, str] | None:
    return (grpc.StatusCode.INVALID_ARGUMENT, str(exc)) if isinstance(exc, ValueError) else None


class PeerServicer(pb_grpc.PeerKmsServicer):
    """Receives direct-link deliveries and key-stream events from neighbours (the caller: the node
    its certificate names; any other role is refused)."""

    def __init__(self, delivery: KeyDelivery, stream_events: Callable[[str, pb.StreamEventRequest],
                                                                    pb.StreamEventReply] | None = None) -> None:
        self.delivery = delivery
        self.stream_events = stream_events

    @rpc.method(_delivery_errors, role="node", server="peer")
    def DeliverDirect(self, request: pb.DirectDelivery, node: str) -> pb.DirectAck:
        n = self.delivery.accept_direct(node, request.link_id, request.master_sae_id,
                                        list(request.slave_sae_ids),
                                        [(k.key_id, list(k.link_key_ids), k.size_bits) for k in request.keys],
                                        dict(request.extensions))
        return pb.DirectAck(stored=n)

    @rpc.method(_event_errors, role="node", server="peer")
    def StreamEvent(self, request: pb.StreamEventRequest, node: str) -> pb.StreamEventReply:
        if self.stream_events is None:
            raise rpc.Abort(grpc.StatusCode.UNIMPLEMENTED, "key streams are not served here")
        return self.stream_events(node, request)
