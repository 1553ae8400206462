"""Relay messages to neighbours over the agent's channel pool; their gRPC errors become RelayFailure."""
from __future__ import annotations

import time
from typing import Any

import grpc

from kms_agents.channels import PeerChannels
from kms_agents.relay import attempts, wire
from kms_agents.relay.messages import Ack, Reason, RelayFailure, RelayMessage, VoidMessage


class RelayTransport:
    """``relay`` / ``void`` as the engine calls them: (next hop, its address, message, timeout) -> ack."""

    def __init__(self, channels: PeerChannels) -> None:
        self.channels = channels

    def relay(self, node: str, addr: str, msg: RelayMessage, timeout: float) -> Ack:
        return self._call("Relay", node, addr, wire.to_request(msg), timeout)

    def void(self, node: str, addr: str, msg: VoidMessage, timeout: float) -> Ack:
        # best effort, after a failure: never long (a node forwarding voids over a link that
        # stalled would otherwise hold its server threads for the hop timeout each)
        return self._call("Void", node, addr, wire.void_to_request(msg), min(timeout, attempts.VOID_S))

    def _call(self, method: str, node: str, addr: str, req: Any, timeout: float) -> Ack:
        if not addr:
            raise RelayFailure(Reason.UNMET, f"no relay address known for next hop {node}")
        started = time.monotonic()
        try:
            ack = getattr(self.channels.key_relay(node, addr), method)(req, timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED \
                    and time.monotonic() - started >= 0.9 * timeout:
                # our own deadline, not the next hop's report: the connection may be stalled in
                # TCP back-off on a route that is gone; the next call opens a fresh one
                self.channels.discard(node, addr)
                raise RelayFailure(Reason.TIMEOUT, f"next hop {node} did not answer within "
                                                   f"{timeout:.2f} s") from None
            raise RelayFailure(wire.reason_of(exc.code()),
                               exc.details() or f"next hop {node}: {exc.code().name}") from None
        return wire.ack_of(ack)
