"""A QKD link end's alarm in QuSeC: the link is excluded, the path on it moves, a ``qkd_alarm``
event is logged (raised, then cleared) and /status links show the alarm and the QBER."""
from __future__ import annotations

import pytest

from quseccontroller.bridge import BridgeError
from quseccontroller.core import QuSeCCore
from quseccontroller.dispatch import BridgeDispatch
from quseccontroller.events import EventLog
from tests.helpers.qusec_net import inventory_for

SQUARE = [("A", "B"), ("B", "C"), ("A", "D"), ("D", "C")]


class RecordingSender:
    def __init__(self) -> None:
        self.actions: list = []

    def execute(self, actions, **_kw):
        self.actions += list(actions or [])
        return 0, []


def link(node: str, a: str, b: str, status: str = "ACTIVE", alarm: str = "", qber: float = 0.0) -> dict:
    return {"link_id": f"{a}-{b}", "peer_node": b if a == node else a, "skr_bps": 1e5,
            "stored_bits": 10**6, "peer_stored_bits": 10**6, "status": status, "alarm": alarm,
            "qber": qber, "kms_kind": "simulated"}


def links_of(node: str, **fault) -> list[dict]:
    return [link(node, a, b, **(fault.get(f"{a}-{b}") or {})) for a, b in SQUARE if node in (a, b)]


@pytest.fixture
def square():
    log = EventLog()
    core = QuSeCCore(inventory=inventory_for(SQUARE))
    d = BridgeDispatch(core, RecordingSender(), lambda: {}, log)
    for i, n in enumerate("ABCD", start=1):
        d.handle("register", {"node_id": n, "relay_addr": f"10.0.0.{i}:7000", "data_ip": f"10.0.0.{i}",
                              "trust_level": 3, "links": links_of(n), "saes": [f"sae-{n.lower()}"]})
    return d, log


def test_an_alarm_excludes_the_link_moves_the_path_and_is_logged(square):
    d, log = square
    granted = d.handle("request_path", {"src_node": "A", "dst_node": "C", "src_sae": "sae-a",
                                        "dst_sae": "sae-c"})
    pid = granted["paths"][0]["path_id"]
    relay = granted["paths"][0]["hops"][1]["node_id"]
    lid = f"A-{relay}"
    seq = log.seq
    alarm = {lid: {"status": "OFF", "alarm": "qber_above_threshold", "qber": 0.2}}
    d.handle("report", {"node_id": "A", "links": links_of("A", **alarm)})
    events = log.since(seq)["events"]
    (raised,) = [e for e in events if e["kind"] == "qkd_alarm"]
    assert raised | {"seq": 0, "time": 0} == {"seq": 0, "time": 0, "kind": "qkd_alarm", "link": lid,
                                              "node": "A", "state": "raised",
                                              "reason": "qber_above_threshold", "qber": 0.2}
    assert [e["link"] for e in events if e["kind"] == "qkd_link_down"] == [lid]
    (moved,) = [e for e in events if e["kind"] == "reroute"]
    assert moved["path_id"] == pid and moved["result"] == "moved" and relay not in moved["nodes"]
    status = d.core.status()["links"][lid]
    assert (status["status"], status["alarm"], status["qber"]) == ("OFF", "qber_above_threshold", 0.2)
    # the far end reports it too (the quantum channel is shared): one more alarm, no second move
    seq = log.seq
    d.handle("report", {"node_id": relay, "links": links_of(relay, **alarm)})
    assert [(e["kind"], e["node"]) for e in log.since(seq)["events"]] == [("qkd_alarm", relay)]
    # cleared at both ends: the link is usable again
    seq = log.seq
    for n in ("A", relay):
        d.handle("report", {"node_id": n, "links": links_of(n)})
    events = log.since(seq)["events"]
    assert [(e["kind"], e.get("state")) for e in events if e["kind"] == "qkd_alarm"] == \
        [("qkd_alarm", "cleared")] * 2
    assert events[-2]["reason"] == "qber_above_threshold"
    assert [e["link"] for e in events if e["kind"] == "qkd_link_up"] == [lid]
    status = d.core.status()["links"][lid]
    assert (status["status"], status["alarm"], status["qber"]) == ("ACTIVE", "", 0.0)


def test_a_qber_below_the_threshold_is_shown_and_the_link_stays_usable(square):
    d, log = square
    seq = log.seq
    d.handle("report", {"node_id": "A", "links": links_of("A", **{"A-B": {"qber": 0.05}})})
    assert log.since(seq)["events"] == []
    status = d.core.status()["links"]["A-B"]
    assert (status["status"], status["alarm"], status["qber"]) == ("ACTIVE", "", 0.05)


@pytest.mark.parametrize("qber", [-0.1, 0.7, "0.2", True])
def test_a_report_with_a_qber_outside_0_to_half_is_refused(square, qber):
    d, _ = square
    with pytest.raises(BridgeError, match="qber"):
        d.handle("report", {"node_id": "A", "links": links_of("A", **{"A-B": {"qber": qber}})})
