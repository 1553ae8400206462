"""Policy metric "latency" on a real network: the classical links' latency_ms in the topology file
reaches QuSeC (through the inventory the launcher writes) and a relayed key takes the faster,
longer path, while "hops" takes the shorter one."""
from __future__ import annotations

import json

import pytest

from mininet_topos import topology
from mininet_topos.launch.keypair import client_pair
from mininet_topos.launch.local import LocalNetwork
from quseccontroller.inventory import load as load_inventory

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A-B-D: two QKD hops over slow classical links; A-C-E-D: three hops over fast ones.
TOPO = """[network]
name = "latency"
""" + "".join(f'[[nodes]]\nid = "{n}"\n' for n in "ABCDE") + "".join(
    f'[[links]]\na = "{a}"\nb = "{b}"\nrate_bps = 1e6\n' for a, b in ("AB", "BD", "AC", "CE", "ED")) + "".join(
    f'[[classical_links]]\na = "{a}"\nb = "{b}"\nlatency_ms = {ms}\n'
    for a, b, ms in (("A", "B", 20), ("B", "D", 20), ("A", "C", 1), ("C", "E", 1), ("E", "D", 1))) + """
[[saes]]
id = "sae-a"
node = "A"
[[saes]]
id = "sae-d"
node = "D"
"""


@pytest.mark.parametrize("metric, path", [("latency", ["A", "C", "E", "D"]), ("hops", ["A", "B", "D"])])
def test_the_latency_metric_prefers_the_faster_path(tmp_path, metric, path) -> None:
    (tmp_path / "latency.toml").write_text(TOPO)
    (tmp_path / "policy.toml").write_text(f'[default]\naction = "allow"\nmetric = "{metric}"\n')
    topo = topology.load(tmp_path / "latency.toml")
    net = LocalNetwork(topo, tmp_path / "state", policy=tmp_path / "policy.toml")
    try:
        net.start()
        inv = load_inventory(tmp_path / "state" / "inventory.toml")
        assert inv.hop_latencies() == {"A-B": 20.0, "B-D": 20.0, "A-C": 1.0, "C-E": 1.0, "E-D": 1.0}
        doc = json.loads(net.network_json.read_text())
        result = client_pair(doc, "sae-a", "sae-d", 1)
        assert result["ok"], result
        assert result["path"] == path
    finally:
        net.stop()
