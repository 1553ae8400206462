"""Granted relay paths: the record of one share of a grant, and the authorisations it hands out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from quseccontroller import ofmsgs
from quseccontroller.actions import Authorise, PathRequest, RelayAuthorisation
from quseccontroller.policy import Decision
from quseccontroller.state import AgentInfo


@dataclass
class ActivePath:
    """One granted relay path (one share of a multipath grant)."""
    path_id: str
    seq: int
    nodes: list[str]
    links: list[str]
    request: PathRequest
    rule: str
    decision: Decision
    security_level: str
    share_index: int
    share_count: int
    granted_at: float
    expires_at: float
    cost: float
    reserved: list[tuple[str, str, int]] = field(default_factory=list)  # (link, from node, bits)
    flows: dict[int, int] = field(default_factory=dict)                 # dpid -> relay flows
    unplanned_hops: int = 0
    plan: tuple | None = None   # (classical version + hops, flows by switch, unplanned hops)
    foreign_src_sae: bool = False   # the master SAE is another domain's (src: a site's KME)

    @property
    def cookie(self) -> int:
        return ofmsgs.path_cookie(self.seq)


def authorisations(ap: ActivePath, agents: Mapping[str, AgentInfo]) -> list[Authorise]:
    """One Authorise per node of the path, naming its previous and next hop."""
    n = ap.nodes
    acts: list[Authorise] = []
    for i, node in enumerate(n):
        prev = n[i - 1] if i > 0 else ""
        nxt = n[i + 1] if i + 1 < len(n) else ""
        auth = RelayAuthorisation(
            path_id=ap.path_id, prev_hop=prev, next_hop=nxt,
            prev_hop_addr=agents[prev].relay_addr if prev in agents else "",
            next_hop_addr=agents[nxt].relay_addr if nxt in agents else "",
            expires_unix_ms=int(ap.expires_at * 1000), src_node=n[0], dst_node=n[-1],
            share_index=ap.share_index, share_count=ap.share_count, src_sae=ap.request.src_sae,
            dst_saes=ap.request.dst_saes or ((ap.request.dst_sae,) if ap.request.dst_sae else ()),
            security_level=ap.security_level,
            handoff=ap.request.handoff if nxt == "" else None, foreign_src_sae=ap.foreign_src_sae)
        acts.append(Authorise(node, auth))
    return acts
