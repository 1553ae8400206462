"""Progress output counts right: one line per node, numbered in order, even when several agents
come up between two polls (it used to print "[5/6] node B", "[5/6] node F" and no 4/6)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from mininet_topos.launch.fleet import AgentFleet


class Running:
    def poll(self) -> None:
        return None


def test_ready_lines_count_each_node_once_in_order(tmp_path: Path) -> None:
    fleet = AgentFleet()
    for n in "ABCDEF":
        (tmp_path / n).mkdir()
        fleet.configs[n] = SimpleNamespace(state_dir=str(tmp_path / n))
        fleet.procs[n] = Running()
    for n in "AB":
        (tmp_path / n / "agent.json").write_text(json.dumps({"etsi014_url": f"https://{n}"}))
    fleet.poll()                                            # A and B came up first
    for n in "CDEF":                                        # then four at once
        (tmp_path / n / "agent.json").write_text(json.dumps({"etsi014_url": f"https://{n}"}))
    lines: list[str] = []
    fleet.wait_ready(timeout=5, say=lines.append)
    assert lines == [f"  [{i}/6] node {n} ready: https://{n}" for i, n in zip(range(3, 7), "CDEF")]
