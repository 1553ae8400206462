"""The tables of qkdnet status|links|paths|events (shared with the Mininet CLI) and qlink's
node-id arguments, on fixed inputs."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mininet_topos import topology
from mininet_topos.cli import mncli, status as status_cli, views
from mininet_topos.launch.plan import plan

STATUS = {
    "switches": [1, 2], "switch_links": 1, "links": [[[1, 2], [2, 2]]], "gateway_restarts": 0,
    "core": {
        "nodes": {"A": {"online": True}, "B": {"online": True}, "C": {"online": False}},
        "links": {"A-B": {"a": "A", "b": "B", "skr_bps": 1e6, "stored_bits": {"A": 10, "B": 20},
                          "status": "ACTIVE", "disputed": False},
                  "B-C": {"a": "B", "b": "C", "skr_bps": 5e5, "stored_bits": {"B": 7},
                          "status": "OFF", "disputed": True}},
        "paths": {"qp1": {"nodes": ["A", "B"], "rule": "default", "share": "1/1", "flows": 4}},
        "flows": 4, "policy": "/p/policy.toml", "inventory": "/p/inventory.toml"},
    "policy_reload": {"file": "/p/policy.toml", "reloads": {"ok": 1, "rejected": 1},
                      "last": {"time": 1764600000.0, "result": "rejected", "ok": False,
                               "rules": 0, "problems": ["/p/policy.toml: rule 1: action: bad"]}},
    "recent_refusals": [{"seq": 7, "time": 1764600001.0, "kind": "path_refused", "src": "A",
                         "dst": "C", "src_sae": "sae-a", "dst_sae": "sae-c", "reason": "policy_deny",
                         "rule": "no-c", "message": "rule 'no-c' denies A->C", "application": ""}],
}


def test_the_mininet_cli_prints_the_same_tables():
    assert mncli.format_links is views.format_links and mncli.format_paths is views.format_paths


def test_summary_names_switches_nodes_links_paths_the_reload_and_refusals():
    text = views.format_summary(STATUS, "https://127.0.0.1:1")
    assert "https://127.0.0.1:1" in text and "/p/policy.toml" in text
    assert "2 connected, 1 links" in text
    assert "2/3 registered; not registered: C" in text
    assert "1/2 up, 1 disputed" in text
    assert "1 active relay paths" in text
    assert "REJECTED" in text and "rule 1: action: bad" in text and "1 taken, 1 rejected" in text
    assert "path_refused" in text and "reason=policy_deny" in text and "src=A dst=C" in text
    assert "application=" not in text          # empty fields are left out
    assert "none recent" in views.format_summary({"core": {}})


def test_reload_lines():
    assert views.format_reload({}) == "default table (no policy file to reload)"
    assert "not reloaded since" in views.format_reload({"file": "/p.toml", "last": {}})
    ok = views.format_reload({"file": "/p.toml", "reloads": {"ok": 2, "rejected": 0},
                              "last": {"time": 1.0, "ok": True, "rules": 3}})
    assert ok.startswith("1970-01-01 00:00:01 ok (3 rules); 2 taken, 0 rejected")


def test_links_and_paths_tables():
    links = views.format_links(STATUS)
    assert "A=10, B=20" in links and "OFF (ends disagree)" in links
    assert "switch links (LLDP): 1:2-2:2" in links
    assert views.format_paths(STATUS) == "qp1: A -> B  rule=default share=1/1 flows=4"


def test_event_lines():
    e = {"seq": 12, "time": 0.0, "kind": "path_granted", "src": "A", "dst": "C",
         "paths": [["A", "B", "C"], ["A", "D", "C"]], "rule": "r", "path_ids": ["qp1", "qp2"]}
    line = views.format_event(e)
    assert line.split()[0] == "12" and "path_granted" in line
    assert "paths=A -> B -> C | A -> D -> C" in line and "path_ids=qp1; qp2" in line
    assert line.index("src=") < line.index("paths=") < line.index("rule=")
    text = views.format_events({"events": [e], "last_seq": 12, "missed": 3})
    assert text.splitlines()[0] == "(3 earlier events no longer held)"
    assert views.format_events({"events": [], "last_seq": 0}) == "no events"


def test_network_defaults_only_when_one_network_runs(monkeypatch, tmp_path):
    from mininet_topos.launch import rundir
    assert status_cli.network_path(tmp_path) == tmp_path / "network.json"
    assert status_cli.network_path(tmp_path / "x.json") == tmp_path / "x.json"

    class Run:
        def __init__(self, d: Path, t: float):
            self.state_dir, self.started = d, t

        def alive(self) -> bool:
            return True
    live = []
    monkeypatch.setattr(rundir, "runs", lambda: live)
    with pytest.raises(status_cli.StatusError, match="no running network"):
        status_cli.network_path(None)
    for i in range(2):
        (tmp_path / f"s{i}").mkdir()
        (tmp_path / f"s{i}" / "network.json").write_text("{}")
        live.append(Run(tmp_path / f"s{i}", float(i)))
    with pytest.raises(status_cli.StatusError, match="2 networks are running"):
        status_cli.network_path(None)
    live.pop()
    assert status_cli.network_path(None) == tmp_path / "s0" / "network.json"


def test_a_missing_network_json_is_one_line_and_status_1(tmp_path, capsys):
    args = argparse.Namespace(network=tmp_path / "none.json", view="paths", json=False, timeout=1.0)
    assert status_cli.run(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.json" in err and "cannot read" in err


def test_qlink_takes_node_and_sae_ids_and_names_the_neighbours():
    p = plan(topology.load("linear6"))
    assert mncli.qlink_target(p, "A B down") == ("A", "B", False)
    assert mncli.qlink_target(p, "sae-a B up") == ("A", "B", True)
    msg = mncli.qlink_target(p, "A C down")
    assert "not neighbours" in msg and "A's neighbours: B" in msg
    assert "unknown node or SAE 'Z'" in mncli.qlink_target(p, "A Z down")
    assert mncli.qlink_target(p, "A B").startswith("usage: qlink")
    assert mncli.qlink_qkd("A B qkd down") == ("A", "B", ["down"], None)   # a QKD link fault: mininet_topos.cli.qlink
    assert mncli.switch_neighbours(p, "C") == ["B", "D"]
