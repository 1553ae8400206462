"""The Mininet CLI's ``qlink A B qkd qber 0.2`` on a real Mininet network under QuSeC: the calls run
inside the node hosts (the agents listen there), both ends of the QKD link raise the alarm,
QuSeC shows it and the next key goes round the other side; ``qlink A B qkd up`` clears it; nodes
that are not neighbours get their QKD neighbours named."""
from __future__ import annotations

import os
import sys

import pytest

from mininet_topos import topology
from mininet_topos.launch.lock import mininet_lock, wait_for
from mininet_topos.launch.mininet import MininetNetwork

pytestmark = pytest.mark.emulation
# a square: A-B-C and A-D-C
TOPO = "".join(f'[[nodes]]\nid = "{n}"\n' for n in "ABCD") + "".join(
    f'[[links]]\na = "{a}"\nb = "{b}"\nlength_km = 5\n' for a, b in ("AB", "BC", "AD", "DC")) + \
    '[[saes]]\nid = "sae-a"\nnode = "A"\n[[saes]]\nid = "sae-c"\nnode = "C"\n'


@pytest.fixture(scope="module")
def qnet(emulation_host, tmp_path_factory, no_leftovers_module):
    root = tmp_path_factory.mktemp("qkdfault")
    (root / "square.toml").write_text('[network]\nname = "square"\n' + TOPO)
    with mininet_lock():
        net = MininetNetwork(topology.load(str(root / "square.toml")), root / "state",
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


def link(qnet: MininetNetwork, a: str, b: str) -> tuple[str, dict]:
    links = qnet.status()["core"]["links"]
    return next((lid, x) for lid, x in links.items() if {x["a"], x["b"]} == {a, b})


def test_qlink_qkd_qber_raises_the_alarm_and_the_key_goes_round(qnet, tmp_path, capsys):
    first = qnet.key_pair("sae-a", "sae-c", 1, fresh=True)
    assert first["ok"], first
    relay = first["path"][1]
    other = "D" if relay == "B" else "B"
    lid, _ = link(qnet, "A", relay)
    out = cli(qnet, tmp_path, capsys, "qlink A C qkd down", "qlink A B qkd qber 0.7",
              f"qlink sae-a {relay} qkd qber 0.2")
    assert "nodes A and C are not neighbours (no QKD link between them); A's QKD neighbours: B, D" in out
    assert "QBER 0.7 is outside 0..0.5" in out
    for end, peer in (("A", relay), (relay, "A")):
        assert (f"link {lid} at {end} (toward {peer}): qber 0.2: ALARM qber_above_threshold, no key"
                in out), out
    state = wait_for(lambda: (x := link(qnet, "A", relay)[1])["status"] == "OFF" and x["alarm"] and x,
                     5, f"QuSeC to show the alarm on {lid}")
    assert state["alarm"] == "qber_above_threshold" and state["qber"] == pytest.approx(0.2)
    assert "ALARM qber_above_threshold" in cli(qnet, tmp_path, capsys, "qlinks")
    second = qnet.key_pair("sae-a", "sae-c", 1, fresh=True)
    assert second["ok"] and second["path"] == ["A", other, "C"], second
    out = cli(qnet, tmp_path, capsys, f"qlink A {relay} qkd up")
    assert out.count(": up: key rate") == 2, out
    wait_for(lambda: link(qnet, "A", relay)[1]["status"] != "OFF", 10, f"{lid} usable again")
    assert link(qnet, "A", relay)[1]["alarm"] == ""
