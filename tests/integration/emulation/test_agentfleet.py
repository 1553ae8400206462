"""mininet_topos.launch.fleet: readiness by agent.json over many agents at once, a dead agent's log, stop."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mininet_topos.launch.fleet import AgentFleet, AgentStartError

# Stands in for kms_agents.agent: after a delay, writes agent.json next to its config (or exits).
FAKE = ("import json,pathlib,sys,time\n"
        "cfg = pathlib.Path(sys.argv[-1]); d = float(cfg.parent.name.split('-')[1]) / 100\n"
        "time.sleep(d)\n"
        "if cfg.parent.name.startswith('bad'):\n"
        "    print('boom: cannot bind 10.0.0.9:443', flush=True); sys.exit(3)\n"
        "(cfg.parent / 'agent.json').write_text(json.dumps({'etsi014_url': 'https://x/' + cfg.parent.name}))\n"
        "time.sleep(60)\n")


def fake_spawner(_node, argv, env, logf):
    import subprocess
    return subprocess.Popen([sys.executable, "-S", "-c", FAKE, *argv[-2:]], stdout=logf,
                            stderr=subprocess.STDOUT, env=env)


def fleet_of(tmp_path: Path, names: list[str]) -> AgentFleet:
    fleet = AgentFleet(fake_spawner)
    configs = {}
    for name in names:
        (tmp_path / name).mkdir()
        configs[name] = SimpleNamespace(state_dir=str(tmp_path / name))
        (tmp_path / name / "agent.toml").write_text("")
        (tmp_path / name / "agent.json").write_text("{stale")      # a crashed run's leftover
    fleet.configs = configs
    return fleet


def test_waits_for_every_agent_json_and_reports_progress(tmp_path):
    names = [f"n-{i * 7 % 40}" for i in range(30)]
    fleet = fleet_of(tmp_path, names)
    said: list[str] = []
    try:
        fleet.spawn_all()
        fleet.wait_ready(timeout=30, say=said.append)
        assert set(fleet.agents) == set(names)
        assert fleet.agents["n-7"]["etsi014_url"] == "https://x/n-7"   # not the stale file
        assert said[-1].startswith("  [30/30] node ")
        assert fleet.dead() == []
    finally:
        fleet.stop(grace=5)
    assert all(p.poll() is not None for p in fleet.procs.values())


def test_an_agent_that_exits_is_named_with_its_log(tmp_path):
    fleet = fleet_of(tmp_path, ["n-1", "bad-5", "n-300"])
    try:
        fleet.spawn_all()
        with pytest.raises(AgentStartError) as err:
            fleet.wait_ready(timeout=30)
        assert "agent bad-5 exited with code 3" in str(err.value)
        assert "boom: cannot bind" in str(err.value)
    finally:
        fleet.stop(grace=5)


def test_timeout_names_the_missing_agents(tmp_path):
    fleet = fleet_of(tmp_path, ["n-1", "n-900"])
    try:
        fleet.spawn_all()
        with pytest.raises(AgentStartError, match=r"not ready after 1 s: \['n-900'\]"):
            fleet.wait_ready(timeout=1)
        assert "n-1" in fleet.agents
    finally:
        fleet.stop(grace=5)
