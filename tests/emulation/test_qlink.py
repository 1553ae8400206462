"""The Mininet CLI's ``qlink A B down|up`` by node and SAE ids on a real Mininet network under
QuSeC: the switch link goes down and up (QuSeC's status and event log follow), nodes that are
not neighbours get their neighbours named; ``qkdnet links|events`` read the same network."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mininet_topos import topology
from mininet_topos.launch.lock import mininet_lock, wait_for
from mininet_topos.launch.mininet import MininetNetwork
pytestmark = pytest.mark.emulation
TOPO = "".join(f'[[nodes]]\nid = "{n}"\n' for n in "ABC") + "".join(
    f'[[links]]\na = "{a}"\nb = "{b}"\nlength_km = 5\n' for a, b in ("AB", "BC")) + "".join(
    f'[[saes]]\nid = "sae-{n.lower()}"\nnode = "{n}"\n' for n in "ABC")


@pytest.fixture(scope="module")
def qnet(emulation_host, tmp_path_factory, no_leftovers_module):
    root = tmp_path_factory.mktemp("qlink")
    (root / "line3.toml").write_text('[network]\nname = "line3"\n' + TOPO)
    with mininet_lock():
        net = MininetNetwork(topology.load(str(root / "line3.toml")), root / "state",
                             datapath=emulation_host, progress=sys.stderr, ready_timeout=120)
        ok = False
        try:
            net.start()
            yield net
            ok = True
        finally:
            net.stop()
            if not ok:
                net.cleanup()


def cli(qnet: MininetNetwork, tmp_path, capsys, *lines: str) -> str:
    from mininet_topos.cli.mncli import QkdCLI
    script = tmp_path / "cli.txt"
    script.write_text("\n".join(lines) + "\n")
    with open(os.devnull) as devnull:
        QkdCLI(qnet.net, qnet=qnet, script=str(script), stdin=devnull)
    return capsys.readouterr().out


def dpids(qnet: MininetNetwork, *nodes: str) -> frozenset[int]:
    return frozenset(qnet.plan.switch_of(n).dpid for n in nodes)


def test_qlink_takes_node_ids_and_qusec_sees_the_link_go_and_come_back(qnet, tmp_path, capsys):
    ab = dpids(qnet, "A", "B")
    assert ab in qnet.lldp_links()
    seq = qnet.operator.events()["last_seq"]
    out = cli(qnet, tmp_path, capsys, "qlink A C down", "qlink A Z down", "qlink A B sideways",
              "qlink A B down")
    assert "nodes A and C are not neighbours" in out and "A's neighbours: B" in out
    assert "unknown node or SAE 'Z'" in out and "usage: qlink A B down|up" in out
    sw = f"{qnet.switch_name('A')} - {qnet.switch_name('B')}"
    assert f"switch link {sw} (nodes A - B) down" in out
    wait_for(lambda: ab not in qnet.lldp_links(), 20, "QuSeC to drop the A-B switch link")
    events = qnet.operator.events(seq)["events"]
    down = [e for e in events if e["kind"] == "switch_link_down"]
    assert down and frozenset((down[0]["a_dpid"], down[0]["b_dpid"])) == ab
    out = cli(qnet, tmp_path, capsys, "qlink sae-a sae-b up")      # SAE ids: their nodes' switches
    assert f"switch link {sw} (nodes A - B) up" in out
    wait_for(lambda: ab in qnet.lldp_links(), 30, "LLDP to find the A-B switch link again")
    assert any(e["kind"] == "switch_link_up" and frozenset((e["a_dpid"], e["b_dpid"])) == ab
               for e in qnet.operator.events(seq)["events"])


def test_qkdnet_links_and_events_read_the_mininet_network(qnet):
    nj = str(qnet.state_dir / "network.json")
    r = subprocess.run([sys.executable, "-m", "mininet_topos.cli", "links", "--network", nj],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "A-B" in r.stdout and "switch links (LLDP)" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mininet_topos.cli", "events", "--network", nj, "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    kinds = {e["kind"] for e in json.loads(r.stdout)["events"]}
    assert {"switch_up", "switch_link_up", "agent_registered"} <= kinds
