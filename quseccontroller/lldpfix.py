"""A link-expiry loop for os-ken 3.1's LLDP discovery that survives races.

``os_ken.topology.switches.Switches.link_loop`` expires links whose LLDP went quiet.
While it sends ``EventLinkDelete`` the hub may run a port-delete or switch-leave handler
that removes the same link (or its reverse) first; the loop's next ``link_down`` then
raises ``KeyError`` and the green thread dies, so no link ever expires again for the
life of the process (seen on loaded machines with 75+ userspace switches). This loop
skips links that are already gone and survives a failed round.

os-ken also sends one LLDP per port with ``LLDP_SEND_GUARD`` (50 ms) between them, so a round
over P ports takes P x 50 ms: past 200 ports (a 75-node mesh has ~400) a round outlasts its fixed
``LINK_TIMEOUT`` of 10 s and every link expired between two of its LLDPs, flapping the whole
switch graph (and QuSeC replanned every flow on each flap). A link here lives three rounds
(:func:`link_timeout`); a link that really goes down is still seen at once by its port status.
"""
from __future__ import annotations

import logging
import time

from os_ken.topology import event
from os_ken.topology.switches import Link, LinkState, Switches

LOG = logging.getLogger(__name__)


def drop_link(links: LinkState, link: Link) -> bool:
    """Remove ``link`` from os-ken's LinkState if it is still there; True if it was."""
    if link not in links:
        return False
    del links[link]
    peers = links._map.get(link.src)
    if peers is not None:
        peers.pop(link.dst, None)
    return True


def link_timeout(switches: Switches) -> float:
    """How long a link may go without LLDP: os-ken's LINK_TIMEOUT, or three LLDP rounds over
    every port when the ports make a round longer than that."""
    round_s = max(switches.LLDP_SEND_PERIOD_PER_PORT, len(switches.ports) * switches.LLDP_SEND_GUARD)
    return max(switches.LINK_TIMEOUT, 3 * round_s)


LLDP_MISSED = 3   # LLDPs sent on a link's source port since one came back, before it expires


def missed(switches: Switches, src) -> int:
    """LLDPs sent from port ``src`` since one of them was last received (os-ken's PortData.sent;
    a port that is gone counts as missed)."""
    data = switches.ports.get(src) if hasattr(switches.ports, "get") else None
    return LLDP_MISSED if data is None else data.sent


def expire_links(switches: Switches, now: float) -> list[Link]:
    """One round of the expiry loop: drop links silent for :func:`link_timeout` whose source port
    has also sent :data:`LLDP_MISSED` LLDPs that never came back, tell observers.

    Time alone is not evidence: when the hub is busy (a 200-node bring-up keeps osken-manager at
    100 %), os-ken sends its LLDPs late, links went stale by the clock while their ports had not
    even been probed again, and each expiry replanned the flows of every host whose routes
    crossed the link, keeping the hub busier still (measured: a link expiring every 2 s, every
    path request past its deadline). A link silent three times longer than its timeout goes
    whatever the count says (a cable moved to another port keeps its source port answered)."""
    timeout = link_timeout(switches)
    stale = [link for link, seen in list(switches.links.items())
             if seen + timeout < now and (missed(switches, link.src) >= LLDP_MISSED
                                          or seen + 3 * timeout < now)]
    expired = []
    for link in stale:
        if not drop_link(switches.links, link):
            continue  # removed meanwhile by a port or switch event
        expired.append(link)
        switches.send_event_to_observers(event.EventLinkDelete(link))
        rev_link = Link(link.dst, link.src)
        if rev_link not in stale:
            # The reverse link is very likely down too: probe it early.
            switches.links.rev_link_set_timestamp(rev_link, now - timeout)
            if link.dst in switches.ports:
                switches.ports.move_front(link.dst)
                switches.lldp_event.set()
    return expired


def link_loop(self: Switches) -> None:
    """Drop-in replacement for ``Switches.link_loop`` (same cadence, same events)."""
    while self.is_active:
        self.link_event.clear()
        try:
            expire_links(self, time.time())
        except Exception:  # one bad round must not end link discovery for good
            LOG.exception("LLDP link expiry round failed; discovery continues")
        self.link_event.wait(timeout=self.TIMEOUT_CHECK_PERIOD)


def install() -> None:
    """Use the race-safe loop for every Switches app started after this call, and no os-ken host
    discovery: QuSeC learns hosts itself (``state.host_seen``), while os-ken's handler parsed
    every packet-in and, at each new link, walked every host it had seen (a seventh of a busy
    200-node bring-up's samples went there). Without the ``set_ev_cls`` mark the handler is not
    registered at all."""
    Switches.link_loop = link_loop
    Switches.host_discovery_packet_in_handler = _no_host_discovery


def _no_host_discovery(self: Switches, ev) -> None:
    """Not registered as a handler (no ``set_ev_cls``): os-ken's host list stays empty."""
