"""vKMS <-> neighbour vKMS over gRPC (mutual TLS): the peer client and the PeerKms servicer."""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from kms_agents.config import PeerConfig
from kms_agents.keysource import KeySourceError
from kms_agents.keystore import DuplicateKey
from kms_agents.proto import peer_pb2 as pb
from kms_agents.proto import peer_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from kms_agents.service import KeyService

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 5.0


class PeerUnavailable(Exception):
    """A neighbour's agent could not be reached or refused the call."""


def caller_node(context: grpc.ServicerContext) -> str | None:
    """CN of the verified client certificate of a gRPC call (the calling node or SAE)."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else None


class PeerClients:
    """Channels to the neighbours' relay/peer gRPC servers; re-resolves agent.json when a peer moved."""

    def __init__(self, peers: dict[str, PeerConfig], credentials: grpc.ChannelCredentials) -> None:
        self._peers = peers
        self._creds = credentials
        self._channels: dict[str, tuple[str, grpc.Channel, pb_grpc.PeerKmsStub]] = {}
        self._lock = threading.Lock()

    def address(self, node: str) -> str:
        peer = self._peers.get(node)
        if peer is None:
            raise PeerUnavailable(f"node {node} is not a configured neighbour")
        if peer.relay_addr:
            return peer.relay_addr
        try:
            return json.loads(Path(peer.agent_json).read_text())["relay_addr"]
        except (OSError, ValueError, KeyError) as exc:
            raise PeerUnavailable(f"neighbour {node}: no usable agent.json at {peer.agent_json} ({exc})") from exc

    def _entry(self, node: str, refresh: bool) -> tuple[str, grpc.Channel, pb_grpc.PeerKmsStub]:
        if not refresh:
            cached = self._channels.get(node)
            if cached:
                return cached
        addr = self.address(node)
        with self._lock:
            cached = self._channels.get(node)
            if cached and cached[0] == addr:
                return cached          # same address: keep the channel (gRPC reconnects by itself)
            if cached:
                cached[1].close()
            ch = grpc.secure_channel(addr, self._creds)
            entry = (addr, ch, pb_grpc.PeerKmsStub(ch))
            self._channels[node] = entry
            return entry

    def channel(self, node: str, *, refresh: bool = False) -> grpc.Channel:
        """A (cached) mutual-TLS channel to ``node``'s relay/peer server; ``refresh`` re-resolves its address."""
        return self._entry(node, refresh)[1]

    def call(self, node: str, fn: Callable[[pb_grpc.PeerKmsStub], Any]) -> Any:
        """Run ``fn(stub)``; on UNAVAILABLE re-resolve the address once (the peer may have restarted)."""
        try:
            return fn(self._entry(node, False)[2])
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise PeerUnavailable(f"node {node}: {exc.code().name}: {exc.details()}") from exc
        try:
            return fn(self._entry(node, True)[2])
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

    def close(self) -> None:
        with self._lock:
            for _, ch, _ in self._channels.values():
                ch.close()
            self._channels.clear()


class PeerServicer(pb_grpc.PeerKmsServicer):
    """Receives direct-link deliveries and key-stream events from neighbours."""

    def __init__(self, service: "KeyService", stream_events: Callable[[str, pb.StreamEventRequest],
                                                                      pb.StreamEventReply] | None = None) -> None:
        self.service = service
        self.stream_events = stream_events

    def DeliverDirect(self, request: pb.DirectDelivery, context: grpc.ServicerContext) -> pb.DirectAck:
        node = caller_node(context)
        if node is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        try:
            n = self.service.accept_direct(node, request.link_id, request.master_sae_id,
                                           list(request.slave_sae_ids),
                                           [(k.key_id, list(k.link_key_ids), k.size_bits) for k in request.keys],
                                           dict(request.extensions))
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except DuplicateKey as exc:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except KeySourceError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return pb.DirectAck(stored=n)

    def StreamEvent(self, request: pb.StreamEventRequest, context: grpc.ServicerContext) -> pb.StreamEventReply:
        node = caller_node(context)
        if node is None or self.stream_events is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED if node else grpc.StatusCode.UNAUTHENTICATED,
                          "key streams are not served here" if node else "no client certificate")
        try:
            return self.stream_events(node, request)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
