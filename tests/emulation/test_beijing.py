"""The 35-node Beijing QMAN comes up in Mininet and serves a key between two end nodes."""
from __future__ import annotations

import sys

import pytest


from mininet_topos import topology
from mininet_topos.cli.demo import far_pairs
from mininet_topos.launch.mininet import MininetNetwork
from mininet_topos.launch.lock import mininet_lock

pytestmark = [pytest.mark.emulation, pytest.mark.slow, pytest.mark.usefixtures("no_leftovers")]


def test_beijing_qman_comes_up_and_serves_a_key_between_end_nodes(emulation_host, tmp_path):
    topo = topology.load("beijing_qman")
    assert len(topo.nodes) == 35
    master, slave, hops = far_pairs(topo, min_hops=3, limit=1)[0]
    assert {topo.nodes[topo.saes[s].node].role for s in (master, slave)} == {"end"}
    with mininet_lock():
        net = MininetNetwork(topo, tmp_path / "bj", datapath=emulation_host, progress=sys.stderr,
                             ready_timeout=120)   # the bring-up target
        ok = False
        try:
            net.start()
            st = net.status()
            assert len(st["switches"]) == 35
            assert net.lldp_links(st) == net.plan.expected_switch_links()
            assert sum(1 for n in st["core"]["nodes"].values() if n["online"]) == 35
            r = net.key_pair(master, slave, 2)
            assert r["ok"], r
            assert r["path"][0] == topo.saes[master].node and r["path"][-1] == topo.saes[slave].node
            assert len(r["path"]) - 1 >= hops
            ok = True
        finally:
            net.stop()
            if not ok:
                net.cleanup()
