"""/metrics reads the app's status at most ``STATUS_SHARE`` of the time: at 10,000 nodes one
status is ~6 MB, ~0.5 s of the app's hub and of the gateway's GIL, and a scrape every few
seconds held up every path request behind it. A fresh read (/status, /healthz, the dashboard)
always asks the app."""
from __future__ import annotations

import time

from quseccontroller.gateway import control
from quseccontroller.gateway.control import ControlServicer


class SlowApp:
    def __init__(self, took: float, nodes: int = 5000):
        self.took, self.calls, self.nodes = took, 0, {f"N{i}": {} for i in range(nodes)}

    def call(self, op, args=None, timeout=10.0):
        assert op == "status"
        self.calls += 1
        time.sleep(self.took)
        return {"switches": ["s1"] * self.calls, "core": {"links": {}, "paths": {}, "nodes": self.nodes}}


def test_metrics_reuse_a_costly_status_for_its_cost_over_the_share(tmp_path, monkeypatch) -> None:
    gw = ControlServicer(str(tmp_path / "bridge.sock"))
    gw.bridge = app = SlowApp(0.05)
    monkeypatch.setattr(control, "STATUS_SHARE", 0.1)     # reused for 0.05 / 0.1 = 0.5 s
    first = gw.refresh_gauges(fresh=False)
    assert gw.refresh_gauges(fresh=False) is first and app.calls == 1
    assert gw.metrics.registry.get_sample_value("qusec_switches_up") == 1
    assert len(gw.refresh_gauges()["switches"]) == 2       # fresh: asked again
    until = gw._status[1]
    assert until - time.monotonic() > 0.3                   # ~0.5 s: its cost over the share
    time.sleep(until - time.monotonic() + 0.01)
    assert len(gw.refresh_gauges(fresh=False)["switches"]) == 3   # past its time: asked again


def test_a_small_networks_status_is_read_fresh_even_when_slow(tmp_path, monkeypatch) -> None:
    """A loaded machine made a 20-node status take 0.5 s once; its gauges then lagged a refused
    switch by 10 s (a scrape right after the event saw 0)."""
    gw = ControlServicer(str(tmp_path / "bridge.sock"))
    gw.bridge = app = SlowApp(0.05, nodes=20)
    monkeypatch.setattr(control, "STATUS_SHARE", 0.1)
    gw.refresh_gauges(fresh=False)
    gw.refresh_gauges(fresh=False)
    assert app.calls == 2
