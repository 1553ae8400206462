"""What a source asks QuSeC for and what it gets: the path query, the granted plan, a refusal."""
from __future__ import annotations

from dataclasses import dataclass

from kms_agents.relay.messages import Reason, RelayFailure


@dataclass(frozen=True)
class PathQuery:
    """A source's request for a relay path for one SAE pair."""

    src_node: str
    dst_node: str
    src_sae: str
    dst_sae: str
    key_size_bits: int
    key_count: int
    dst_saes: tuple[str, ...] = ()   # every slave SAE (dst_sae is the first); () = (dst_sae,)

    @property
    def slave_saes(self) -> tuple[str, ...]:
        return self.dst_saes or ((self.dst_sae,) if self.dst_sae else ())


@dataclass(frozen=True)
class Hop:
    """One node of a granted path and the address of its relay service."""

    node_id: str
    relay_addr: str = ""


@dataclass(frozen=True)
class PlannedPath:
    """One granted path, source first; ``share_index`` counts from 0 (the hop messages from 1)."""

    path_id: str
    hops: tuple[Hop, ...]
    share_index: int = 0

    @property
    def nodes(self) -> list[str]:
        return [h.node_id for h in self.hops]


@dataclass(frozen=True)
class Handoff:
    """Where a key leaves this node's domain for another: at ``exit_node`` (the path's end), over
    the interworking site ``crossing`` (kind ``etsi020``: ETSI GS QKD 020), to the KME
    ``peer_kme`` of ``peer_domain``."""

    crossing: str
    kind: str
    peer_domain: str
    peer_kme: str
    exit_node: str


@dataclass(frozen=True)
class PathPlan:
    """What QuSeC granted: one path, or k node-disjoint ones, the level, the rule, the expiry;
    ``handoff`` when the slave SAE is another domain's (the path ends at the exit KME)."""

    paths: tuple[PlannedPath, ...]
    security_level: str = ""
    rule: str = ""
    expires_at: float = 0.0          # unix seconds
    handoff: Handoff | None = None

    @property
    def end_node(self) -> str:
        """The node the paths end at (the destination, or the exit KME of a handoff)."""
        return self.paths[0].hops[-1].node_id if self.paths and self.paths[0].hops else ""

    def hops(self) -> list[list[str]]:
        """Node ids of each path."""
        return [p.nodes for p in self.paths]


class PathRefused(RelayFailure):
    """QuSeC refused (or could not answer) a path request.

    ``refusal`` is QuSeC's reason ("policy_deny", "no_key", ...; "timeout" and
    "controller_unavailable" when it did not answer), ``rule`` the policy rule.
    """

    def __init__(self, reason: Reason, refusal: str, message: str, rule: str = "") -> None:
        super().__init__(reason, message)
        self.refusal, self.rule = refusal, rule

    def __str__(self) -> str:
        return f"QuSeC refused the path ({self.reason.value}, {self.refusal or 'no reason'}): {self.message}"
