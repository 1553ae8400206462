"""The event log: bounded, numbered, read after a sequence number; never key material."""
from __future__ import annotations

import pytest

from quseccontroller.events import REFUSALS, EventLog
from quseccontroller.policywatch import PolicyWatch


def test_events_are_numbered_and_read_after_a_sequence_number():
    log = EventLog(capacity=10)
    for i in range(3):
        log.record("agent_registered", 100.0 + i, node=f"N{i}")
    assert [e["seq"] for e in log.since(0)["events"]] == [1, 2, 3]
    after = log.since(2)
    assert [e["node"] for e in after["events"]] == ["N2"]
    assert after["last_seq"] == 3 and after["missed"] == 0
    assert log.since(3)["events"] == [] and log.since(99)["events"] == []
    assert log.since(0, limit=2)["events"][-1]["seq"] == 2
    assert log.since(0)["events"][0] == {"seq": 1, "time": 100.0, "kind": "agent_registered",
                                         "node": "N0"}


def test_the_log_holds_its_capacity_and_says_how_many_a_reader_missed():
    log = EventLog(capacity=5)
    for i in range(12):
        log.record("path_refused", float(i), src="A", dst="B", reason="no_key")
    held = log.since(0)
    assert [e["seq"] for e in held["events"]] == [8, 9, 10, 11, 12]
    assert held["missed"] == 7 and held["last_seq"] == 12
    assert log.since(9)["missed"] == 0 and [e["seq"] for e in log.since(9)["events"]] == [10, 11, 12]
    assert log.first_seq == 8


def test_unknown_kinds_and_key_material_are_refused():
    log = EventLog()
    with pytest.raises(ValueError, match="unknown event kind"):
        log.record("key_delivered", 0.0)
    for field in ("key", "key_id", "key_ids", "KEY_ID", "key_bytes"):
        with pytest.raises(ValueError, match="key material"):
            log.record("path_granted", 0.0, **{field: "x"})
    assert log.seq == 0
    with pytest.raises(ValueError):
        EventLog(capacity=0)


def test_recent_gives_the_last_events_of_some_kinds():
    log = EventLog()
    log.record("path_refused", 1.0, reason="a")
    log.record("path_granted", 2.0)
    log.record("registration_refused", 3.0, reason="b")
    log.record("policy_rejected", 4.0, problems=["p"])
    assert [e["seq"] for e in log.recent(REFUSALS, 2)] == [3, 4]
    assert [e["kind"] for e in log.recent(REFUSALS)] == ["path_refused", "registration_refused",
                                                         "policy_rejected"]


GOOD = '[default]\naction = "allow"\npaths = 1\n\n[[rules]]\nname = "r1"\nmatch = { dst_node = "B" }\naction = "deny"\n'


def test_policy_reloads_keep_their_state_and_events(tmp_path):
    import os
    f = tmp_path / "policy.toml"
    f.write_text(GOOD)
    log = EventLog()
    watch = PolicyWatch(str(f), log)
    watch.initial()
    assert watch.state()["last"] == {} and watch.state()["reloads"] == {"ok": 0, "rejected": 0}
    applied = []

    def touch(text: str, t: int) -> None:
        f.write_text(text)
        os.utime(f, (t, t))

    touch(GOOD, 1_000_000)
    assert watch.poll(applied.append, 50.0) and len(applied) == 1
    assert watch.state()["last"] == {"time": 50.0, "result": "ok", "ok": True, "file": str(f),
                                     "rules": 1, "problems": []}
    touch('[default]\naction = "maybe"\n', 2_000_000)
    assert not watch.poll(applied.append, 60.0) and len(applied) == 1
    last = watch.state()["last"]
    assert last["result"] == "rejected" and not last["ok"] and last["time"] == 60.0
    assert last["problems"] and "action" in " ".join(last["problems"])
    assert watch.state()["reloads"] == {"ok": 1, "rejected": 1}
    kinds = [(e["kind"], e.get("rules"), bool(e.get("problems"))) for e in log.since(0)["events"]]
    assert kinds == [("policy_reloaded", 1, False), ("policy_rejected", None, True)]
    assert not watch.poll(applied.append, 70.0)   # unchanged file: nothing new
    assert log.seq == 2
