"""``qkdnet demo`` on multi-domain topologies as local processes: keys between domains, an
interworking node down and what follows. On beijing_shanghai3 only the PQC link is left once the
Shanghai site's trunk KME stops, so the parent's chain moves to it (refused at once while PQC
crossings are not built, or a key at the post-quantum level); on two domains joined by two
sites, the next key goes through the other site."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mininet_topos import topology
from mininet_topos.cli import demo_domains
from mininet_topos.launch.clean import leftover_pids
from mininet_topos.launch.domains import MultiDomainNetwork

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QKDNET = str(Path(sys.executable).with_name("qkdnet"))

TWO_SITES = """
[network]
name = "two_sites"
description = "two domains joined by two interworking sites"
[[domains]]
id = "west"
[[domains]]
id = "east"
"""
TWO_SITES += "".join(f'[[nodes]]\nid = "{n}"\ndomain = "{d}"\n'
                     for n, d in [("W1", "west"), ("W2", "west"), ("W3", "west"),
                                  ("E1", "east"), ("E2", "east"), ("E3", "east")])
TWO_SITES += "".join(f'[[links]]\na = "{a}"\nb = "{b}"\nlength_km = 10\n'
                     for a, b in [("W1", "W2"), ("W1", "W3"), ("E1", "E2"), ("E1", "E3")])
TWO_SITES += """
[[interworking]]
id = "north"
kmes = ["W2", "E2"]
[[interworking]]
id = "south"
kmes = ["W3", "E3"]
[[saes]]
id = "sae-w"
node = "W1"
[[saes]]
id = "sae-e"
node = "E1"
"""


def test_the_demo_json_on_beijing_shanghai3_moves_the_chain_to_the_pqc_link(tmp_path) -> None:
    state = tmp_path / "demo"
    out = subprocess.run([QKDNET, "demo", "beijing_shanghai3", "--local", "--json", "--keys", "2",
                          "--state-dir", str(state)], capture_output=True, text=True, timeout=400)
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["ok"], out.stdout[-4000:] + out.stderr[-2000:]
    assert doc["mode"] == "local" and doc["domains"] == ["beijing", "trunk", "shanghai"]
    assert [(p["src_sae"], p["dst_sae"], p["crossings"], p["keys_matched"]) for p in doc["pairs"]] == [
        ("sae-bj1", "sae-sh1", ["bj-site", "sh-site"], 2), ("sae-bj3", "sae-jn", ["bj-site"], 2)]
    assert doc["pairs"][0]["chain"][-1]["path"] == ["SH-IW", "SH2", "SH1"]
    assert doc["failure"]["node"] == "T-SH" and doc["failure"]["alternative"] == "pqc"
    rr = doc["reroute"]
    assert rr["chain_after"] == ["pqc-wan"]
    if rr["outcome"] == "refused":
        assert rr["took_s"] < 5.0 and "pqc-wan" in rr["error"] and "503" in rr["error"]
    else:
        assert rr["outcome"] == "rerouted" and rr["security_level"] == "pqc"
    assert rr["unaffected"] == [{"src_sae": "sae-bj3", "dst_sae": "sae-jn", "keys_matched": 2}]
    assert not leftover_pids(state)


def test_with_a_second_site_the_demo_reroutes_through_it(tmp_path) -> None:
    path = tmp_path / "two_sites.toml"
    path.write_text(TWO_SITES)
    topo = topology.load(str(path))
    pairs = demo_domains.cross_pairs(topo)
    assert pairs == [("sae-e", "sae-w", 1)]
    net = MultiDomainNetwork(topo, tmp_path / "state", interval_s=1.0)
    result = demo_domains.run_demo(net, topo, pairs, 1, lambda _msg: None)
    assert result["ok"], json.dumps(result, indent=1)[-3000:]
    before = result["pairs"][0]["crossings"]
    assert len(before) == 1 and result["failure"]["site"] == before[0]
    assert result["failure"]["alternative"] == "site"
    rr = result["reroute"]
    other = ({"north", "south"} - set(before)).pop()
    assert rr["outcome"] == "rerouted" and rr["keys_matched"] == 1
    assert [s.get("crossing") for s in rr["chain"]] == [other, None]   # the other site, then west's segment
    assert not leftover_pids(tmp_path / "state")
