"""What a node may say about itself: its Register and its link reports, checked (pure).

A node's certificate says who it is (the gateway checks role and name); everything else it
claims is checked here. Its relay address and data IP must be addresses its certificate
names, so it cannot have QuSeC steer (or block) traffic to another host. With an inventory,
QuSeC takes the node's trust level, SAEs and QKD links from it: a Register claiming an
unknown node, another trust level, an SAE it does not have, or a link the inventory does not
give it (or with another peer) is refused; a link report for such a link is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from quseccontroller.identity import Identity
from quseccontroller.inventory import Inventory
from quseccontroller.state import AgentInfo, LinkState

# Refusal reasons (the metric label and the ErrorInfo metadata "reason").
UNKNOWN_NODE = "unknown_node"
TRUST_LEVEL = "trust_level"
SAE = "sae"
LINK = "link"
ADDRESS = "address"


class Refused(Exception):
    """A registration QuSeC does not take: ``reason`` (one of the constants above) and a
    message the agent's operator can act on."""

    def __init__(self, reason: str, message: str, **details: str) -> None:
        super().__init__(message)
        self.reason, self.message, self.details = reason, message, details


@dataclass(frozen=True)
class LinkRefusal:
    """A link state dropped from a report: which link, why."""
    link_id: str
    reason: str
    message: str


def check_addresses(info: AgentInfo, addresses: Iterable[str]) -> None:
    """The relay address and data IP a node registers must be IP addresses its certificate
    names: QuSeC installs flows (and relay-port drops) for them."""
    ident = Identity("node", info.node_id, tuple(addresses))
    host = info.relay_addr.rpartition(":")[0] if info.relay_addr else ""
    for what, value in (("relay address", host), ("data IP", info.data_ip)):
        if value and not ident.has_address(value):
            named = ", ".join(ident.addresses) or "none"
            raise Refused(ADDRESS, f"node {info.node_id!r} registers {what} {value!r}, which its "
                          f"certificate does not name (its addresses: {named})",
                          field=what.lower().replace(" ", "_"), value=value)


def screen_links(node_id: str, links: Iterable[LinkState], inventory: Inventory | None
                 ) -> tuple[list[LinkState], list[LinkRefusal]]:
    """The link states a node may report (its inventory links, with the right peer) and the
    others with the reason; without an inventory every link is kept."""
    kept: list[LinkState] = []
    refused: list[LinkRefusal] = []
    for ls in links:
        if inventory is None:
            kept.append(ls)
            continue
        link = inventory.link(ls.link_id)
        peer = link.peer(node_id) if link else None
        if link is None:
            refused.append(LinkRefusal(ls.link_id, LINK, f"link {ls.link_id!r} is not in QuSeC's inventory"))
        elif peer is None:
            refused.append(LinkRefusal(ls.link_id, LINK, f"link {ls.link_id!r} joins {link.a} and "
                                       f"{link.b}, not node {node_id!r}"))
        elif peer != ls.peer_node:
            refused.append(LinkRefusal(ls.link_id, LINK, f"link {ls.link_id!r} of node {node_id!r} "
                                       f"leads to {peer!r}, not {ls.peer_node!r}"))
        else:
            kept.append(ls)
    return kept, refused


def admit(info: AgentInfo, inventory: Inventory | None,
          addresses: Iterable[str] | None = None) -> AgentInfo:
    """The registration as QuSeC takes it (trust level and SAEs from the inventory), or
    Refused. ``addresses``: the IP addresses of the node's certificate (None: not checked)."""
    if addresses is not None:
        check_addresses(info, addresses)
    if inventory is None:
        return info
    node = inventory.node(info.node_id)
    if node is None:
        raise Refused(UNKNOWN_NODE, f"node {info.node_id!r} is not in QuSeC's inventory "
                      f"({inventory.source})")
    if info.trust_level != node.trust:
        raise Refused(TRUST_LEVEL, f"node {info.node_id!r} claims trust level {info.trust_level}; "
                      f"QuSeC's inventory gives it {node.trust}",
                      claimed=str(info.trust_level), inventory=str(node.trust))
    foreign = [s for s in info.saes if s not in node.saes]
    if foreign:
        owners = [f"{s!r} (of node {inventory.node_of_sae(s)!r})" if inventory.node_of_sae(s)
                  else repr(s) for s in foreign]
        raise Refused(SAE, f"node {info.node_id!r} claims SAE(s) {', '.join(owners)} the "
                      "inventory does not give it", saes=",".join(foreign))
    _, refused = screen_links(info.node_id, info.links, inventory)
    if refused:
        raise Refused(LINK, "; ".join(r.message for r in refused),
                      links=",".join(r.link_id for r in refused))
    return replace(info, trust_level=node.trust, saes=node.saes)
