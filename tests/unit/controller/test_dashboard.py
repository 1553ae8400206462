"""The dashboard's view model, layout and access rules, without sockets: QuSeC's status and
events in, the page's snapshot and deltas out."""
from __future__ import annotations

import os
import stat
import tomllib

import pytest

from quseccontroller.dashboard import access
from quseccontroller.dashboard.layout import BOX, layout
from quseccontroller.dashboard.model import (EMPTY_BITS, LOW_BITS, DashboardView, describe,
                                             link_level, quantile)


def status(stored=(100_000, 120_000), link_status="ACTIVE", paths=None, online=True, **extra) -> dict:
    core = {"nodes": {"A": {"online": True, "trust": 3}, "B": {"online": online, "trust": 5},
                      "C": {"online": True, "trust": 2}},
            "links": {"A-B": {"a": "A", "b": "B", "skr_bps": 1e6, "status": link_status,
                              "stored_bits": {"A": stored[0], "B": stored[1]}, "disputed": ""},
                      "B-C": {"a": "B", "b": "C", "skr_bps": 2e3, "status": "ACTIVE",
                              "stored_bits": {"B": 500_000, "C": 500_000}, "disputed": ""}},
            "paths": paths or {}}
    return {"core": core, "recent_refusals": [], **extra}


GRANT = {"seq": 1, "time": 10.0, "kind": "path_granted", "src": "A", "dst": "C", "src_sae": "sae-a",
         "dst_sae": "sae-c", "paths": [["A", "B", "C"]], "path_ids": ["p1"], "rule": "default",
         "security_level": "qkd"}
PATHS = {"p1": {"nodes": ["A", "B", "C"], "rule": "default", "share": "1/1", "flows": 0}}


def test_link_levels_follow_the_thresholds() -> None:
    assert link_level(LOW_BITS, "ACTIVE") == "ok"
    assert link_level(LOW_BITS - 1, "ACTIVE") == "low"
    assert link_level(EMPTY_BITS - 1, "PASSIVE") == "empty"
    assert link_level(10**9, "OFF") == "off"


def test_nodes_are_drawn_at_the_inventorys_locations() -> None:
    st = status()
    for node, loc in (("A", [0, 0]), ("B", [10, 0]), ("C", [10, 10])):
        st["core"]["nodes"][node]["location"] = loc
    v = DashboardView()
    v.update(st, [], None, now=1.0)
    assert v.layout_kind == "location"
    assert v.nodes["C"]["y"] < v.nodes["B"]["y"] == v.nodes["A"]["y"] and v.nodes["A"]["x"] < v.nodes["B"]["x"]


def test_the_snapshot_has_every_node_and_link_with_the_lower_ends_key() -> None:
    v = DashboardView()
    delta = v.update(status(), [], None, now=100.0)
    snap = v.snapshot()
    assert set(snap["nodes"]) == {"A", "B", "C"} == set(delta["nodes"])
    assert set(snap["links"]) == {"A-B", "B-C"}
    ab = snap["links"]["A-B"]
    assert ab["stored_bits"] == 100_000 and ab["level"] == "ok" and ab["label"] == "1 Mb/s"
    assert ab["consumption_bps"] is None       # the app did not say
    assert snap["nodes"]["B"]["trust"] == 5 and snap["app"] is True
    for n in snap["nodes"].values():
        assert 0 <= n["x"] <= BOX and 0 <= n["y"] <= BOX


def test_a_delta_carries_only_what_changed() -> None:
    v = DashboardView(step_s=1000)
    v.update(status(), [], None, now=100.0)
    assert v.update(status(), [], None, now=100.5) == {}
    delta = v.update(status(stored=(500, 120_000)), [], None, now=101.0)
    assert set(delta["links"]) == {"A-B"} and delta["links"]["A-B"]["level"] == "empty"
    assert "nodes" not in delta
    delta = v.update(status(online=False), [], None, now=101.5)
    assert delta["nodes"] == {"B": v.nodes["B"]} and v.nodes["B"]["online"] is False


def test_paths_are_grouped_per_sae_pair_with_rule_and_security_level_from_the_grant() -> None:
    v = DashboardView()
    v.update(status(paths=PATHS), [GRANT], None, now=11.0)
    (pair,) = v.snapshot()["pairs"]
    assert (pair["src_sae"], pair["dst_sae"], pair["rule"], pair["security_level"]) == \
        ("sae-a", "sae-c", "default", "qkd")
    assert pair["paths"] == [{"id": "p1", "nodes": ["A", "B", "C"], "share": "1/1", "links": ["A-B", "B-C"]}]
    assert v.links["A-B"]["paths"] == 1
    # the path expires: the pair goes, and so does what the view remembered of its grant
    delta = v.update(status(), [], None, now=80.0)
    assert delta["pairs"] == [] and v._grants == {}


def test_multipath_shares_are_one_pair_with_two_paths() -> None:
    grant = dict(GRANT, paths=[["A", "B", "C"], ["A", "C"]], path_ids=["p1", "p2"])
    paths = {**PATHS, "p2": {"nodes": ["A", "C"], "rule": "default", "share": "2/2"}}
    v = DashboardView()
    v.update(status(paths=paths), [grant], None, now=11.0)
    (pair,) = v.pairs
    assert [p["share"] for p in pair["paths"]] == ["1/1", "2/2"]
    assert pair["paths"][1]["links"] == []      # no QKD link A-C: nothing to highlight


def test_events_come_once_each_with_a_line_of_text_and_alarms_show() -> None:
    v = DashboardView()
    alarm = {"seq": 2, "time": 12.0, "kind": "qkd_alarm", "link": "A-B", "node": "A",
             "reason": "qber_above_threshold", "qber": 0.2, "state": "raised"}
    delta = v.update(status(), [GRANT, alarm], None, now=12.5)
    assert [e["seq"] for e in delta["events"]] == [1, 2]
    assert "sae-a -> sae-c" in delta["events"][0]["text"] and "A-B-C" in delta["events"][0]["text"]
    assert "qber_above_threshold" in delta["events"][1]["text"] and "0.200" in delta["events"][1]["text"]
    assert "cleared" in describe(dict(alarm, state="cleared", qber=0.0))
    assert "events" not in v.update(status(), [GRANT, alarm], None, now=13.0)   # seen already
    st = status(link_status="OFF")
    st["core"]["links"]["A-B"].update(alarm="qber_above_threshold", qber=0.2)
    link = v.update(st, [], None, now=13.5)["links"]["A-B"]
    assert (link["level"], link["alarm"], link["qber"]) == ("off", "qber_above_threshold", 0.2)


def test_refusals_show_their_reason() -> None:
    refusal = {"seq": 3, "time": 5.0, "kind": "path_refused", "src": "A", "dst": "C",
               "src_sae": "sae-a", "dst_sae": "sae-c", "reason": "no_path", "message": "no path with key"}
    v = DashboardView()
    v.update(status(recent_refusals=[refusal]), [], None, now=6.0)
    (r,) = v.refusals
    assert r["reason"] == "no_path" and "no path with key" in r["text"] and r["refusal"]


def test_no_key_material_reaches_the_page() -> None:
    # an event the log refuses to hold would not be described either; the text names no field
    text = describe({"kind": "path_granted", "src_sae": "x", "dst_sae": "y", "paths": [["A", "B"]],
                     "rule": "r", "key": "SECRET"})
    assert "SECRET" not in text


def test_the_series_keeps_one_point_per_step_over_the_window() -> None:
    v = DashboardView(window_s=20, step_s=5)
    for i in range(20):
        v.update(status(stored=(100_000 + i, 120_000)), [], None, now=100.0 + i)
    s = v.snapshot()["series"]["A-B"]
    assert [t for t, _ in s] == [100.0, 105.0, 110.0, 115.0]
    for i in range(20, 40):
        v.update(status(), [], None, now=100.0 + i)
    assert v.snapshot()["series"]["A-B"][0][0] >= 139 - 20


def test_quantiles_interpolate_inside_buckets() -> None:
    buckets = [(0.01, 50), (0.1, 100), (float("inf"), 100)]
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.99, buckets) == pytest.approx(0.01 + 0.09 * 49 / 50)
    assert quantile(0.5, [(0.1, 0), (float("inf"), 0)]) is None
    assert quantile(0.5, [(0.1, 0), (float("inf"), 4)]) == 0.1   # all above the last bound


def counters(t: int, requested: int, granted: int, fast: int) -> dict:
    return {"requested": requested, "granted": granted, "refused": requested - granted,
            "setup_buckets": [(0.005, fast), (0.05, granted), (float("inf"), granted)]}


def test_kpis_are_differences_over_the_sliding_window() -> None:
    v = DashboardView(window_s=60)
    v.update(status(), [], counters(0, 100, 100, 100), now=0.0)     # before the window
    v.update(status(), [], counters(0, 110, 108, 100), now=50.0)
    v.update(status(), [], counters(0, 120, 116, 100), now=100.0)
    k = v.kpis
    assert (k["requests"], k["granted"], k["failures"]) == (10, 8, 2)
    assert k["availability"] == 0.8
    assert 5.0 < k["delay_p50_ms"] <= 50.0 and k["delay_p99_ms"] <= 50.0
    assert (k["links_up"], k["links"], k["nodes_online"], k["nodes"]) == (2, 2, 3, 3)


def test_without_counters_the_kpis_count_the_apps_events() -> None:
    refused = {"seq": 2, "time": 11.0, "kind": "path_refused", "reason": "no_path"}
    v = DashboardView()
    k = v.update(status(), [GRANT, refused], None, now=12.0)["kpis"]
    assert (k["requests"], k["failures"], k["availability"]) == (2, 1, 0.5)


def test_the_app_away_is_shown_and_the_last_view_kept() -> None:
    v = DashboardView()
    v.update(status(), [], None, now=1.0)
    assert v.update({}, [], None, now=2.0)["app"] is False
    assert set(v.snapshot()["nodes"]) == {"A", "B", "C"}


def test_classical_links_are_drawn_between_the_nodes_their_switches_serve() -> None:
    st = status(links=[[[1, 3], [2, 3]], [[2, 4], [9, 1]]])
    for node, dpid in (("A", 1), ("B", 2), ("C", None)):
        st["core"]["nodes"][node]["switch"] = dpid
    v = DashboardView()
    v.update(st, [], None, now=1.0)
    assert v.classical == [{"a": "A", "b": "B"}]


# -- layout --------------------------------------------------------------------------------------

def test_layout_uses_locations_when_every_node_has_one_north_up() -> None:
    kind, pos = layout(["A", "B"], [("A", "B")], {"A": (0, 0), "B": (10, 10)})
    assert kind == "location"
    assert pos["A"][0] < pos["B"][0] and pos["A"][1] > pos["B"][1]   # B is north-east of A


def test_layout_without_locations_is_stable_and_inside_the_box() -> None:
    nodes = [f"N{i}" for i in range(30)]
    edges = [(nodes[i], nodes[(i + 1) % 30]) for i in range(30)] + [("N0", "N15")]
    kind, one = layout(nodes, edges, {"N0": (1, 2)})
    assert kind == "stable"
    assert layout(list(reversed(nodes)), list(reversed(edges)))[1] == one
    assert all(0 <= x <= BOX and 0 <= y <= BOX for x, y in one.values())
    assert len(set(one.values())) == 30


# -- access --------------------------------------------------------------------------------------

def test_the_token_file_is_0600_256_bits_and_kept_across_gateway_restarts(tmp_path) -> None:
    token = access.ensure_token(tmp_path)
    path = access.token_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 43 and access.ensure_token(tmp_path) == token
    os.chmod(path, 0o644)                 # readable by others: not trusted, replaced
    fresh = access.ensure_token(tmp_path)
    assert fresh != token and stat.S_IMODE(path.stat().st_mode) == 0o600
    access.remove_token(tmp_path)
    assert access.read_token(tmp_path) == ""


def test_tokens_and_cookies_are_compared_whole() -> None:
    token = "t" * 43
    assert access.token_ok(token, token)
    for wrong in ("", None, token[:-1], token + "x", "u" * 43):
        assert not access.token_ok(wrong, token)
    assert not access.token_ok("", "")
    cookie = access.cookie_value(token)
    assert cookie != token and access.cookie_ok(cookie, token)
    assert not access.cookie_ok(token, token) and not access.cookie_ok(None, token)
    header = access.cookie_header(token)
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/dashboard" in header


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "::", "example.org", ""])
def test_a_non_loopback_bind_is_refused_unless_allowed(host) -> None:
    with pytest.raises(access.DashboardAccessError, match="loopback"):
        access.check_bind(host, "refuse")
    access.check_bind(host, "allow")


def test_loopback_binds_peers_and_host_names() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        access.check_bind(host, "refuse")
    with pytest.raises(access.DashboardAccessError, match="dashboard-remote"):
        access.check_bind("127.0.0.1", "sometimes")
    assert access.peer_ok("127.0.0.1", "refuse") and not access.peer_ok("10.1.2.3", "refuse")
    assert not access.peer_ok(None, "refuse") and access.peer_ok("10.1.2.3", "allow")
    for ok in ("127.0.0.1:9303", "localhost:1", "[::1]:9303", "localhost"):
        assert access.host_header_ok(ok, "refuse"), ok
    for bad in ("evil.example:9303", "10.0.0.1:9303", "", "[::2]:1"):
        assert not access.host_header_ok(bad, "refuse"), bad


def test_locations_that_would_stack_nodes_give_the_stable_layout() -> None:
    # two metro networks on a country's map: each metro's nodes would be one dot
    locs = {"A": (0, 0), "B": (0.01, 0.01), "C": (10, 10), "D": (10.01, 10.0)}
    kind, pos = layout(locs, [("A", "B"), ("B", "C"), ("C", "D")], locs)
    assert kind == "stable" and len(set(pos.values())) == 4


# -- where the locations come from: QuSeC's inventory ---------------------------------------------

def test_the_inventory_carries_node_locations_and_refuses_bad_ones() -> None:
    from quseccontroller import inventory
    inv = inventory.parse({"nodes": [{"id": "A", "location": [1, 2.5]}, {"id": "B"}]})
    assert inv.node("A").location == (1.0, 2.5) and inv.node("B").location is None
    assert inventory.parse(tomllib.loads(inventory.dumps(inv))) == inv
    for bad in ([1], [1, "x"], "1,2", [1, 2, 3], [True, 1], [float("nan"), 1]):
        with pytest.raises(inventory.InventoryError, match=r"nodes\[1\] \(A\): location: must be \[x, y\]"):
            inventory.parse({"nodes": [{"id": "A", "location": bad}]})


def test_provisioning_gives_quseccontroller_the_topologys_locations() -> None:
    from mininet_topos import topology
    from mininet_topos.provision.inventory import build
    topo = topology.load("metro8")
    inv = build(topo)
    assert {n.id: n.location for n in inv.nodes} == {n.id: n.location for n in topo.nodes.values()}


def test_the_cores_status_names_locations_switches_and_consumption() -> None:
    from quseccontroller import inventory
    from quseccontroller.core import QuSeCCore
    inv = inventory.parse({"nodes": [{"id": "A", "location": [3, 4]}, {"id": "B"}],
                           "links": [{"id": "A-B", "a": "A", "b": "B"}]})
    core = QuSeCCore(inventory=inv)
    st = core.status()
    assert st["nodes"] == {} or all("location" in v for v in st["nodes"].values())
    assert core._location("A") == [3.0, 4.0] and core._location("B") is None
    assert core._switch_of("A") is None


def test_two_hundred_nodes_stay_light() -> None:
    import json
    import time as _time

    from mininet_topos import synthetic
    topo = synthetic.mesh(200, 7)
    core = {"nodes": {n: {"online": True, "trust": 3, "location": list(v.location) if v.location else None}
                      for n, v in topo.nodes.items()},
            "links": {lk.id: {"a": lk.a, "b": lk.b, "skr_bps": lk.rate_bps, "status": "ACTIVE",
                              "stored_bits": {lk.a: 10**6, lk.b: 10**6}, "consumption_bps": {lk.a: 0.0}}
                      for lk in topo.links}, "paths": {}}
    v = DashboardView()
    t0 = _time.monotonic()
    v.update({"core": core}, [], None, now=1.0)
    first = _time.monotonic() - t0
    t0 = _time.monotonic()
    core["links"][topo.links[0].id]["stored_bits"] = {topo.links[0].a: 10, topo.links[0].b: 10}
    delta = v.update({"core": core}, [], None, now=1.5)
    again = _time.monotonic() - t0
    assert first < 5.0 and again < 0.5, (first, again)    # the layout once, then diffs
    assert list(delta["links"]) == [topo.links[0].id]
    assert len(json.dumps(v.snapshot())) < 400_000


# -- the hub: streams bounded per identity and in all, a page that does not read is cut -----------

class AppThroughGateway:
    """The two calls the hub makes of the gateway, answering from a status dict (the gateway's
    own metrics registry is real)."""

    def __init__(self) -> None:
        from quseccontroller.gateway.metrics import Metrics
        self.metrics = Metrics()
        self.st = status()
        self.log: list[dict] = []

    def refresh_gauges(self) -> dict:
        return self.st

    def events(self, since: int, limit: int) -> dict:
        return {"events": [e for e in self.log if e["seq"] > since][:limit],
                "last_seq": self.log[-1]["seq"] if self.log else 0, "missed": 0}


def test_hub_bounds_streams_and_cuts_a_page_that_does_not_read() -> None:
    import asyncio

    from quseccontroller.dashboard import web

    async def run() -> None:
        gw = AppThroughGateway()
        hub = web.DashboardHub(gw, max_streams=3, max_per_identity=2)
        a1, a2 = await hub.subscribe("operator:a"), await hub.subscribe("operator:a")
        with pytest.raises(web.StreamsFull, match="already holds 2"):
            await hub.subscribe("operator:a")
        b1 = await hub.subscribe("operator:b")
        with pytest.raises(web.StreamsFull, match="at most 3 streams in all"):
            await hub.subscribe("token")
        hub.unsubscribe(a1)
        await hub.subscribe("token")
        snap = await hub.snapshot()
        assert set(snap["nodes"]) == {"A", "B", "C"}
        # every change goes to every open stream; one that never reads is cut at QUEUE_DEPTH
        for i in range(web.QUEUE_DEPTH + 1):
            gw.log.append(dict(GRANT, seq=i + 1, path_ids=[f"p{i}"]))
            await hub.poll()
            if i < web.QUEUE_DEPTH - 1:
                assert b1.queue.get_nowait()["events"][0]["seq"] == i + 1    # b1 reads
        assert a2 not in hub.subs and a2.queue.get_nowait() is None
        # the app restarted: its log starts again at 1 and the hub follows
        gw.log = [dict(GRANT, seq=1)]
        await hub.poll()
        assert hub.view.last_seq == 1
        await hub.stop()
        assert hub.subs == []

    asyncio.run(run())
