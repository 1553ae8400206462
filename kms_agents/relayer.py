"""What key delivery asks of the key relay: the Relayer protocol, its options and result, and NoRelayer.

Key delivery (:mod:`kms_agents.delivery`) hands keys for SAEs on non-neighbour nodes to
a :class:`Relayer`; the agent's is :class:`kms_agents.relay.network.NetworkRelayer`.
These types never import the relay: the relay implements them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from kms_agents.keyrequest import KeyServiceError


@dataclass
class RequestOptions:
    """The SAE's ETSI 014 request extensions (qusec_ options), as the relayer must honour them."""
    mandatory: dict[str, Any] = field(default_factory=dict)
    optional: dict[str, Any] = field(default_factory=dict)


@dataclass
class RelayResult:
    """What the relayer reports after the keys reached the destination node.

    ``keys``: what the master gets instead of the keys handed to the relayer (same
    order and number), e.g. hybrid/pqc-derived keys or keys served from a pre-relayed
    buffer under their own IDs; None = the keys as given.
    """
    paths: list[list[str]]
    security_level: str = "qkd"
    keys: list[tuple[str, bytes]] | None = None
    domains: list[dict] | None = None   # handed to other domains: the ones the keys went on through

    @property
    def hops(self) -> int:
        """Trusted nodes traversed (0 = direct link), the longest path's."""
        return max((max(0, len(p) - 2) for p in self.paths), default=0)   # [X]: from an exit KME


class Relayer(Protocol):
    """Carries keys to a non-neighbour node; refuses with :class:`KeyServiceError` (400/503)."""

    def relay(self, *, master_sae: str, slave_saes: list[str], dst_node: str,
              keys: list[tuple[str, bytes]], security_level: str | None,
              extensions: dict[str, Any], options: RequestOptions) -> RelayResult: ...

    def stored_key_count(self, dst_node: str, key_size: int) -> int: ...


class NoRelayer:
    """The relayer of a KME without QuSeC: refuses non-neighbour requests with a clear 503."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def _refuse(self, dst_node: str) -> KeyServiceError:
        return KeyServiceError(503, f"node {dst_node} is not a neighbour of node {self.node_id}: key relay "
                                    "across the network needs QuSeC and this KME has none configured; "
                                    "only SAEs on neighbouring nodes can share keys here",
                               [{"qusec_route_type": "indirect", "qusec_dst_node": dst_node}])

    def relay(self, *, master_sae: str, slave_saes: list[str], dst_node: str,
              keys: list[tuple[str, bytes]], security_level: str | None,
              extensions: dict[str, Any], options: RequestOptions | None = None) -> RelayResult:
        raise self._refuse(dst_node)

    def stored_key_count(self, dst_node: str, key_size: int) -> int:
        raise self._refuse(dst_node)
