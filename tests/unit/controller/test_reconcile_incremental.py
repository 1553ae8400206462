"""Incremental flow reconciliation: after any sequence of network events, what every switch holds
is exactly the table a reconciler planning from scratch would send, and an event costs only its
own flows (a node registering on a big network is one drop per switch, not a table walk)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers.fakeoftable import FakeOFTable
from tests.helpers.qusec_net import agents_for, mac_of, ring_switches

from quseccontroller.actions import FlowMods, PathRequest
from quseccontroller.core import QuSeCCore
from quseccontroller.reconcile import FlowReconciler

N_SW = 6
NODES = [f"N{i}" for i in range(1, N_SW + 1)]
EDGES = [(NODES[i], NODES[(i + 1) % N_SW]) for i in range(N_SW)]


def entries(table: FakeOFTable) -> set[tuple]:
    """A switch's flows, without their timeouts (a flow re-sent later counts its timeout from then)."""
    return {(e.table, e.priority, tuple(sorted(e.match.items())), e.outputs, e.cookie, e.goto)
            for e in table.entries}


def from_scratch(core: QuSeCCore, now: float) -> dict[int, set[tuple]]:
    """What each connected switch would hold if a fresh reconciler planned everything now."""
    fresh = FlowReconciler()
    for dpid in core.reconciler.installed:
        fresh.switch_up(dpid)
    out = {d: FakeOFTable() for d in core.reconciler.installed}
    for act in fresh.reconcile(core.state, core.paths, now):
        for msg in act.msgs:
            out[act.dpid].apply(msg)
    return {d: entries(t) for d, t in out.items()}


events = st.one_of(
    st.tuples(st.just("host"), st.integers(0, N_SW - 1), st.integers(1, N_SW), st.sampled_from([1, 4])),
    st.tuples(st.just("other_host"), st.integers(0, 3), st.integers(1, N_SW)),
    st.tuples(st.just("gone"), st.sampled_from(NODES)),
    st.tuples(st.just("register"), st.sampled_from(NODES)),
    st.tuples(st.just("port_down"), st.integers(1, N_SW)),
    st.tuples(st.just("link_up"), st.integers(1, N_SW)),
    st.tuples(st.just("switch_bounce"), st.integers(1, N_SW)),
    st.tuples(st.just("path"), st.sampled_from(NODES), st.sampled_from(NODES)),
    st.tuples(st.just("release"), st.integers(0, 3)),
)


@settings(max_examples=120, deadline=None)
@given(st.lists(events, min_size=1, max_size=25))
def test_switches_hold_what_planning_from_scratch_gives(seq):
    agents = agents_for(EDGES)
    core = QuSeCCore(None)
    for info in agents.values():
        core.agent_registered(info, 0.0)
    sw = ring_switches(core, agents, N_SW)   # the switch tables, fed with every flow mod
    wiring = {(d, 2): (d % N_SW + 1, 3) for d in range(1, N_SW + 1)}
    granted: list[str] = []
    now = 1.0
    for ev in seq:
        now += 1.0
        kind = ev[0]
        if kind == "host":
            info = agents[NODES[ev[1]]]
            acts = core.host_seen(mac_of(info.data_ip), info.data_ip, ev[2], ev[3], now + 100)
        elif kind == "other_host":
            addr = f"10.9.0.{ev[1] + 1}"
            acts = core.host_seen(mac_of(addr), addr, ev[2], 4, now)
        elif kind == "gone":
            acts = core.agent_gone(ev[1], now)
        elif kind == "register":
            acts = core.agent_registered(agents[ev[1]], now)
        elif kind == "port_down":
            acts = core.port_down(ev[1], 2, now)
        elif kind == "link_up":
            (d, p), (d2, p2) = (ev[1], 2), wiring[(ev[1], 2)]
            acts = core.link_up((d, p), (d2, p2), now)
        elif kind == "switch_bounce":
            sw.apply(core.switch_down(ev[1], now))
            sw.tables.pop(ev[1], None)
            acts = core.switch_up(ev[1], [1, 2, 3, 4], now)
        elif kind == "path":
            if ev[1] == ev[2]:
                continue
            a, b = agents[ev[1]], agents[ev[2]]
            d, acts = core.request_path(PathRequest(ev[1], ev[2], a.saes[0], b.saes[0]), now)
            granted += d.path_ids
        else:
            if not granted:
                continue
            acts = core.release_path(granted.pop(ev[1] % len(granted)), now)
        sw.apply(acts)
        want = from_scratch(core, now)
        held = {d: entries(sw.tables.get(d, FakeOFTable())) for d in want}
        assert held == want, f"after {ev}"


def test_an_event_compares_only_its_own_flows(monkeypatch):
    """On a 30-switch ring with 60 hosts (3,700 flows), a node's registration makes the reconciler
    compare each switch's relay drop only (not its table) and a host learned its own routes only;
    the switches are sent exactly those flows."""
    n = 30
    edges = [(f"N{i}", f"N{i % n + 1}") for i in range(1, n + 1)]
    agents = agents_for(edges)
    core = QuSeCCore(None)
    extra = {f"10.9.{i // 250}.{i % 250 + 1}": (i % n + 1, 4) for i in range(30)}
    first = sorted(agents)[0]
    for name, info in agents.items():
        if name != first:
            core.agent_registered(info, 0.0)
    ring_switches(core, agents, n, extra_hosts=extra)
    assert core.reconciler.flow_count() > 3000
    compared: list[int] = []
    diff = FlowReconciler._diff

    def counting(self, dpid, old, new, now, replace_all=False):
        compared.append(len(old) + len(new))
        return diff(self, dpid, old, new, now, replace_all)
    monkeypatch.setattr(FlowReconciler, "_diff", counting)

    acts = core.agent_registered(agents[first], 1.0)
    mods = [(a.dpid, len(a.msgs)) for a in acts if isinstance(a, FlowMods)]
    assert sorted(mods) == [(d, 1) for d in range(1, n + 1)]
    assert sum(compared) == n, compared
    compared.clear()
    acts = core.host_seen(mac_of("10.9.5.5"), "10.9.5.5", 3, 4, 2.0)
    sent = sum(len(a.msgs) for a in acts if isinstance(a, FlowMods))
    # Its IPv4 and ARP routes on every switch, and its own switch's ARP filter for it.
    assert 2 * n < sent <= 2 * n + 4, sent
    assert sum(compared) < 2 * n + 40, compared
