"""What the QuSeC core asks the shim to do: flow messages, relay authorisations, revocations."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Handoff:
    """Where a key leaves this domain for another (mirrors control.proto Handoff): the crossing
    (an interworking site), the peer domain, its KME there, and this domain's exit KME."""
    crossing: str
    kind: str
    peer_domain: str
    peer_kme: str
    exit_node: str


@dataclass(frozen=True)
class PathRequest:
    """A vKMS asks for a relay path (mirrors control.proto PathRequest)."""
    src_node: str
    dst_node: str
    src_sae: str = ""
    dst_sae: str = ""
    key_size_bits: int = 256
    key_count: int = 1
    application: str = ""
    dst_saes: tuple[str, ...] = ()   # every slave SAE (dst_sae is the first)
    # Set by the gateway only (from the parent's chain), never by an agent: the path ends at
    # ``dst_node``, the exit KME, for slave SAEs of another domain.
    handoff: Handoff | None = None

    @property
    def bits(self) -> int:
        """Key bits one path carries for this request (every hop burns this much link key)."""
        return max(1, int(self.key_size_bits)) * max(1, int(self.key_count))


@dataclass(frozen=True)
class RelayAuthorisation:
    """Permission for one vKMS to take part in one relay path (mirrors control.proto)."""
    path_id: str
    prev_hop: str
    next_hop: str
    prev_hop_addr: str
    next_hop_addr: str
    expires_unix_ms: int
    src_node: str
    dst_node: str
    share_index: int = 0
    share_count: int = 1
    src_sae: str = ""                 # what the path was granted for (hops check the relay against it)
    dst_saes: tuple[str, ...] = ()
    security_level: str = ""
    handoff: Handoff | None = None    # at the exit node of an inter-domain segment only
    foreign_src_sae: bool = False     # src_sae is another domain's (the key came in at src_node)


@dataclass(frozen=True)
class FlowMods:
    """OpenFlow messages (built with datapath=None) for one switch; the shim binds, sends, barriers."""
    dpid: int
    msgs: list = field(default_factory=list)


@dataclass(frozen=True)
class Authorise:
    """Push a relay authorisation down the node's control stream."""
    node_id: str
    auth: RelayAuthorisation


@dataclass(frozen=True)
class Revoke:
    """Withdraw a relay authorisation (path released, expired or rerouted)."""
    node_id: str
    path_id: str
    reason: str


Action = Union[FlowMods, Authorise, Revoke]


@dataclass
class PathDecision:
    """The answer to a PathRequest: granted paths, or why not."""
    granted: bool
    paths: list[list[str]] = field(default_factory=list)
    path_ids: list[str] = field(default_factory=list)
    security_level: str = "qkd"
    rule: str = ""
    reason: str = ""
    cost: float = 0.0
    refusal: str = ""
    expires_at: float = 0.0
    costs: list[float] = field(default_factory=list)
    flows_installed: int = 0
