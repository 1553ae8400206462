"""The race-safe LLDP link-expiry loop used in place of os-ken 3.1's."""
from __future__ import annotations

from collections import namedtuple

import pytest
from os_ken.ofproto import ofproto_v1_3
from os_ken.topology import event
from os_ken.topology.switches import Link, LinkState, Port, Switches

from quseccontroller import lldpfix

OfpPort = namedtuple("OfpPort", "port_no hw_addr name config state")


def port(dpid: int, no: int) -> Port:
    return Port(dpid, ofproto_v1_3, OfpPort(no, f"00:00:00:00:0{dpid}:0{no}", f"s{dpid}-eth{no}", 0, 0))


class FakeSwitches:
    """What expire_links touches on os-ken's Switches app."""
    LINK_TIMEOUT = 10.0
    TIMEOUT_CHECK_PERIOD = 0.0
    LLDP_SEND_GUARD = Switches.LLDP_SEND_GUARD
    LLDP_SEND_PERIOD_PER_PORT = Switches.LLDP_SEND_PERIOD_PER_PORT

    def __init__(self) -> None:
        self.links = LinkState()
        self.ports: set = set()
        self.events: list = []
        self.on_event = lambda ev: None
        self.lldp_probe = False

    def send_event_to_observers(self, ev) -> None:
        self.events.append(ev)
        self.on_event(ev)  # other handlers run here when the hub switches green threads

    class lldp_event:  # noqa: N801 (mirrors the attribute os-ken sets)
        @staticmethod
        def set() -> None:
            pass


def link_pair(sw: FakeSwitches, seen: float) -> tuple[Link, Link]:
    a, b = port(1, 1), port(2, 1)
    sw.links.update_link(a, b)
    sw.links.update_link(b, a)
    fwd, rev = Link(a, b), Link(b, a)
    sw.links[fwd] = sw.links[rev] = seen
    return fwd, rev


def test_link_removed_by_a_port_event_during_expiry_is_skipped() -> None:
    sw = FakeSwitches()
    fwd, rev = link_pair(sw, seen=0.0)
    # While observers hear of the first link's deletion, a port-delete handler drops the port
    # on the other side, removing the reverse link that is also due to expire.
    def port_delete_handler(ev) -> None:
        if rev in sw.links:
            sw.links.port_deleted(fwd.dst)

    sw.on_event = port_delete_handler
    expired = lldpfix.expire_links(sw, now=100.0)
    assert expired == [fwd]
    assert len(sw.links) == 0
    assert [type(e) for e in sw.events] == [event.EventLinkDelete]


def test_os_ken_link_down_fails_on_that_race() -> None:
    """The failure the replacement exists for: os-ken's link_down on a link already gone."""
    sw = FakeSwitches()
    fwd, _rev = link_pair(sw, seen=0.0)
    sw.links.port_deleted(fwd.dst)
    with pytest.raises(KeyError):
        sw.links.link_down(Link(fwd.dst, fwd.src))


def test_fresh_links_stay_and_stale_ones_go() -> None:
    sw = FakeSwitches()
    fwd, rev = link_pair(sw, seen=95.0)
    assert lldpfix.expire_links(sw, now=100.0) == []
    sw.links[fwd] = 50.0
    assert lldpfix.expire_links(sw, now=100.0) == [fwd]
    assert rev in sw.links and fwd not in sw.links
    # The reverse link was marked for an early probe: it expires on the next round.
    assert lldpfix.expire_links(sw, now=100.5) == [rev]


def test_loop_survives_a_failed_round() -> None:
    sw = FakeSwitches()
    link_pair(sw, seen=0.0)
    rounds = []

    class Ev:
        def clear(self) -> None:
            pass

        def wait(self, timeout: float) -> None:
            rounds.append(timeout)
            if len(rounds) == 2:
                sw.is_active = False

    sw.is_active = True
    sw.link_event = Ev()
    sw.send_event_to_observers = lambda ev: (_ for _ in ()).throw(RuntimeError("observer bug"))
    lldpfix.link_loop(sw)  # returns once is_active drops, instead of dying on round one
    assert len(rounds) == 2


def test_installed_on_os_ken_switches() -> None:
    import quseccontroller.app  # noqa: F401  (installs on import)
    assert Switches.link_loop is lldpfix.link_loop


def test_with_many_ports_a_link_lives_three_lldp_rounds() -> None:
    """os-ken sends one LLDP per port with a 50 ms guard between them: with 400 ports a round
    takes 20 s, longer than its 10 s LINK_TIMEOUT, so every link expired between two LLDPs
    (75-node meshes flapped links, and QuSeC rebuilt every flow, at 100 % CPU)."""
    sw = FakeSwitches()
    assert (sw.LLDP_SEND_GUARD, sw.LLDP_SEND_PERIOD_PER_PORT) == (0.05, 0.9)   # os-ken 3.1's
    sw.ports = {port(1 + i // 8, 1 + i % 8) for i in range(400)}
    assert lldpfix.link_timeout(sw) == pytest.approx(60.0)    # three rounds of 400 x 50 ms
    fwd, rev = link_pair(sw, seen=100.0)
    assert lldpfix.expire_links(sw, now=100.0 + 25.0) == []     # one round and more: still up
    assert lldpfix.expire_links(sw, now=100.0 + 61.0) == [fwd, rev]


def test_a_small_network_keeps_os_kens_timeout() -> None:
    sw = FakeSwitches()
    sw.ports = {port(1, i) for i in range(1, 9)}
    assert lldpfix.link_timeout(sw) == 10.0


def ports_with_sent(*counts: tuple[Port, int]):
    from os_ken.topology.switches import PortData, PortDataState
    state = PortDataState()
    for p, sent in counts:
        state.add_port(p, b"")
        data = state[p]
        data.sent = sent
    return state


def test_a_link_goes_stale_by_the_clock_only_once_its_port_missed_three_lldps() -> None:
    """A busy hub sends LLDPs late: a link whose source port was not probed again since its last
    LLDP came back is not expired however old it looks; after three unanswered LLDPs it is."""
    sw = FakeSwitches()
    fwd, rev = link_pair(sw, seen=0.0)
    sw.ports = ports_with_sent((fwd.src, 1), (rev.src, lldpfix.LLDP_MISSED))
    timeout = lldpfix.link_timeout(sw)
    expired = lldpfix.expire_links(sw, now=timeout + 1.0)
    assert expired == [rev]                  # its port sent three LLDPs that never came back
    assert fwd in sw.links                   # probed once since: not evidence yet
    sw.ports[fwd.src].sent = lldpfix.LLDP_MISSED
    assert lldpfix.expire_links(sw, now=timeout + 2.0) == [fwd]


def test_a_link_silent_three_timeouts_goes_whatever_its_port_says() -> None:
    sw = FakeSwitches()
    fwd, rev = link_pair(sw, seen=0.0)
    sw.ports = ports_with_sent((fwd.src, 0), (rev.src, 0))
    timeout = lldpfix.link_timeout(sw)
    assert lldpfix.expire_links(sw, now=2 * timeout) == []
    assert sorted(map(str, lldpfix.expire_links(sw, now=3 * timeout + 1.0))) == sorted(map(str, [fwd, rev]))


def test_os_ken_host_discovery_is_not_registered() -> None:
    """QuSeC learns hosts itself: os-ken's per-packet-in host discovery handler is gone."""
    import inspect
    lldpfix.install()
    handlers = [n for n, m in inspect.getmembers(Switches) if hasattr(m, "callers")]
    assert "lldp_packet_in_handler" in handlers and "port_status_handler" in handlers
    assert "host_discovery_packet_in_handler" not in handlers
