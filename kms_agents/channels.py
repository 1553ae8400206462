"""The agent's one pool of mutual-TLS gRPC channels to its neighbours' node-to-node servers.

A channel is opened per (neighbour, address) and accepts only a server certificate that
names that neighbour (TLS target name = node id), whatever address it is reached at. Both
services of the neighbour's server ride on it: PeerKms (address from the config, re-read
from the neighbour's agent.json when it moved) and KeyRelay (address from QuSeC's path or
authorisation, usually the same one).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from kms_agents.config import PeerConfig
from kms_agents.proto import peer_pb2_grpc, relay_pb2_grpc


# A channel of its own per neighbour (a fresh one is a fresh TCP connection, not one shared
# through gRPC's global subchannel pool), reconnecting soon after a failure (a neighbour that
# restarted): relay attempts have deadlines of about a second.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 1000)]
DISCARD_GRACE_S = 30.0   # a discarded channel's calls in flight may finish (or time out) meanwhile


class PeerUnavailable(Exception):
    """A neighbour's agent could not be reached or refused the call."""


@dataclass(frozen=True)
class _Channel:
    channel: grpc.Channel
    peer_kms: peer_pb2_grpc.PeerKmsStub
    key_relay: relay_pb2_grpc.KeyRelayStub


class PeerChannels:
    """Channels to neighbours, one per (node, address); ``peers`` says where neighbours listen."""

    def __init__(self, credentials: grpc.ChannelCredentials,
                 peers: dict[str, PeerConfig] | None = None) -> None:
        self._creds = credentials
        self._peers = dict(peers or {})
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._configured: dict[str, str] = {}   # node -> the address PeerKms calls use now
        self._lock = threading.Lock()

    def address(self, node: str) -> str:
        """A configured neighbour's address (``relay_addr``, or ``relay_addr`` of its agent.json)."""
        peer = self._peers.get(node)
        if peer is None:
            raise PeerUnavailable(f"node {node} is not a configured neighbour")
        if peer.relay_addr:
            return peer.relay_addr
        try:
            return json.loads(Path(peer.agent_json).read_text())["relay_addr"]
        except (OSError, ValueError, KeyError) as exc:
            raise PeerUnavailable(f"neighbour {node}: no usable agent.json at {peer.agent_json} ({exc})") from exc

    def _get(self, node: str, addr: str) -> _Channel:
        entry = self._channels.get((node, addr))
        if entry is not None:
            return entry
        with self._lock:
            entry = self._channels.get((node, addr))
            if entry is None:
                channel = grpc.secure_channel(addr, self._creds, options=CHANNEL_OPTIONS + [
                    ("grpc.ssl_target_name_override", node)])
                entry = _Channel(channel, peer_pb2_grpc.PeerKmsStub(channel),
                                 relay_pb2_grpc.KeyRelayStub(channel))
                self._channels[(node, addr)] = entry
            return entry

    def peer_kms(self, node: str, *, refresh: bool = False) -> peer_pb2_grpc.PeerKmsStub:
        """PeerKms of a configured neighbour; ``refresh`` re-reads its address (it may have
        restarted on a new port) and closes the channel to the old one."""
        addr = None if refresh else self._configured.get(node)
        if addr is None:
            addr = self.address(node)
            with self._lock:
                old = self._configured.get(node)
                self._configured[node] = addr
                stale = self._channels.pop((node, old), None) if old and old != addr else None
            if stale is not None:
                stale.channel.close()
        return self._get(node, addr).peer_kms

    def key_relay(self, node: str, addr: str) -> relay_pb2_grpc.KeyRelayStub:
        """KeyRelay of ``node`` at ``addr``."""
        return self._get(node, addr).key_relay

    def discard(self, node: str, addr: str) -> None:
        """Stop using the channel to ``node`` at ``addr`` (a call on it timed out: its connection
        may hang on a route that is gone); the next call opens a new one. Calls still in flight
        on it keep it for ``DISCARD_GRACE_S``."""
        with self._lock:
            entry = self._channels.pop((node, addr), None)
        if entry is not None:
            timer = threading.Timer(DISCARD_GRACE_S, entry.channel.close)
            timer.daemon = True
            timer.start()

    def close(self) -> None:
        with self._lock:
            entries = list(self._channels.values())
            self._channels.clear()
            self._configured.clear()
        for entry in entries:
            entry.channel.close()
