"""Every domain of beijing_shanghai3 in one Mininet, each under its own QuSeC, with the parent:
each domain's switches under its own controller only, its hosts reachable inside it and not from
another domain's data plane, the interworking sites' direct links; a key between SAEs of different
domains through both sites over ETSI GS QKD 020 (and the Mininet CLI's qkey); a site KME down:
the next key reroutes, or (this topology has only the PQC link left) is refused at once with the
reason, while a key over the other site still flows; with the post-quantum level allowed, the key
crosses the PQC link's WAN link. First, ``qkdnet demo beijing_shanghai3 --json``
as a user runs it (its own network, before this module's)."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mininet_topos import topology
from mininet_topos.launch.clean import our_bridges
from mininet_topos.launch.lock import _inherited_lock_fd, mininet_lock
from mininet_topos.launch.mininet_domains import MininetDomains

pytestmark = pytest.mark.emulation

QKDNET = str(Path(sys.executable).with_name("qkdnet"))
TOPO = "beijing_shanghai3"


def test_demo_json_on_the_multi_domain_topology(emulation_host, tmp_path, no_leftovers):
    """``qkdnet demo beijing_shanghai3 --json``: keys across domains, a site KME down and what
    follows, teardown; exit 0 with every check held, nothing left behind."""
    with mininet_lock():
        fd = _inherited_lock_fd()
        out = subprocess.run([QKDNET, "demo", TOPO, "--json", "--keys", "2", "--state-dir", str(tmp_path / "demo")],
                             pass_fds=(fd,), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=420)
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["ok"] is True, out.stdout[-4000:] + out.stderr[-2000:]
    assert doc["topology"] == TOPO and doc["mode"] == "mininet"
    first = doc["pairs"][0]
    assert (first["src_sae"], first["dst_sae"]) == ("sae-bj1", "sae-sh1")
    assert first["keys_matched"] == first["keys_requested"] == 2
    assert first["crossings"] == ["bj-site", "sh-site"]
    assert [s["domain"] for s in first["chain"]] == ["beijing", "trunk", "shanghai"]
    assert doc["failure"] == {"kind": "site_kme_down", "site": "sh-site", "node": "T-SH", "domain": "trunk",
                              "alternative": "pqc"}
    rr = doc["reroute"]
    assert rr["outcome"] in ("rerouted", "refused") and "pqc-wan" in rr["chain_after"]
    assert rr["outcome"] == "rerouted" or rr["took_s"] < 5.0
    assert [u["keys_matched"] for u in rr["unaffected"]] == [2]      # sae-bj3 -> sae-jn over bj-site
    assert all(c["ok"] for c in doc["checks"]) and len(doc["checks"]) >= 6
    assert not our_bridges()


@pytest.fixture(scope="module")
def md(emulation_host, tmp_path_factory, no_leftovers_module):
    with mininet_lock():
        net = MininetDomains(topology.load(TOPO), tmp_path_factory.mktemp("bs3"), datapath=emulation_host,
                             progress=sys.stderr, interval_s=1.0)
        ok = False
        try:
            net.start()
            net.wait_exported(60)
            yield net
            ok = True
        finally:
            net.stop()
            if not ok:
                net.cleanup()


def controller_of(bridge: str) -> str:
    return subprocess.run(["ovs-vsctl", "get-controller", bridge], capture_output=True, text=True).stdout.strip()


def test_each_domain_has_its_own_quse_c_and_switches(md):
    doc = json.loads(md.network_json.read_text())
    assert doc["mode"] == "mininet" and set(doc["domains"]) == {"beijing", "trunk", "shanghai"}
    assert doc["parent"]["grpc"] and set(doc["crossings"]) == {"bj-site", "sh-site", "pqc-wan"}
    ports = {d: part.controller.of_port for d, part in md.domains.items()}
    assert len(set(ports.values())) == 3
    for dom, part in md.domains.items():
        st = part.status()
        assert st["switches"] == sorted(s.dpid for s in part.plan.switches)   # its switches, no other
        assert {n for n, v in st["core"]["nodes"].items() if v.get("online")} == set(part.topology.nodes)
        for s in part.plan.switches:
            assert controller_of(s.name).strip('"') == f"ssl:127.0.0.1:{ports[dom]}"
        inner = json.loads(Path(doc["domains"][dom]["network"]).read_text())
        assert inner["mode"] == "mininet" and set(inner["nodes"]) == set(part.topology.nodes)
        assert doc["domains"][dom]["qusec"]["https"] == inner["qusec"]["https"]
    # the top-level document lists every host of every domain
    assert set(doc["mininet"]["saes"]) == set(md.topology.saes)


def test_pingall_inside_each_domain_and_no_data_plane_between_domains(md):
    for dom, part in md.domains.items():
        hosts = part.own_hosts()
        assert md.net.ping(hosts, timeout="1") == 0.0, f"domain {dom}"
    bj1, tjn = md.net.get("BJ1"), md.plan.node_host("T-JN")
    assert "100% packet loss" in bj1.cmd(f"ping -c 1 -W 1 {tjn.ip}")   # no switch joins two domains
    # an interworking site: its two KMEs on their own link
    site = next(c for c in md.plan.crossings if c.id == "bj-site")
    assert " 0% packet loss" in md.net.get(site.host_a).cmd(f"ping -c 1 -W 2 {site.ip_b}")


def test_a_key_between_domains_crosses_both_sites_over_etsi020(md):
    r = md.key_pair("sae-bj1", "sae-sh1", 2)
    assert r["ok"] and r["keys_matched"] == 2, r
    assert r["path"][0] == "BJ1" and r["path"][-1] == "BJ-IW"
    assert r["extension"]["qusec_route_type"] == "indirect"

    def granted(dom: str) -> dict:
        evs = md.domains[dom].operator.events(timeout=5)["events"]
        return [e for e in evs if e["kind"] == "path_granted" and e.get("dst_sae") == "sae-sh1"][-1]
    bj, tr, sh = granted("beijing"), granted("trunk"), granted("shanghai")
    assert (bj["crossing"], bj["peer_kme"]) == ("bj-site", "T-BJ")
    assert (tr["crossing"], tr["peer_kme"]) == ("sh-site", "SH-IW")
    assert tr["paths"][0][0] == "T-BJ" and tr["paths"][0][-1] == "T-SH"
    assert "crossing" not in sh and sh["paths"][0] == ["SH-IW", "SH2", "SH1"]
    # the site KMEs serve GS QKD 020 on their site link (their agent.json names it)
    urls = json.loads(md.network_json.read_text())["interworking"]
    assert urls["bj-site"]["T-BJ"]["etsi020_url"] == f"https://{md.plan.crossings[0].ip_of('T-BJ')}:8020"


def test_the_mininet_cli_between_domains(md):
    """The CLI's commands on every domain at once: qkey across domains, qnodes and qpaths from
    every domain's QuSeC."""
    from mininet_topos.cli.mncli import QkdCLI
    cli = SimpleNamespace(qnet=md, _status=md.status)

    def run(cmd, line: str = "") -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cmd(cli, line)
        return out.getvalue()
    got = run(QkdCLI.do_qkey, "sae-bj3 sae-jn 1")
    assert "sae-bj3 -> sae-jn: 1/1 keys match; path BJ3 -> BJ2 -> BJ-IW" in got, got
    nodes = run(QkdCLI.do_qnodes)
    for node in md.topology.nodes:   # registered with its own domain's QuSeC
        assert any(line.startswith(node + " ") and line.rstrip().endswith("yes") for line in nodes.splitlines()), nodes
    paths = run(QkdCLI.do_qpaths)
    assert "BJ3" in paths and "T-JN" in paths, paths


def test_a_site_kme_down_refuses_at_once_or_reroutes_and_the_other_site_still_carries_keys(md):
    """Runs last: it stops the trunk's KME at the Shanghai site (only the PQC link is left
    between Beijing and Shanghai)."""
    proc = md.domains["trunk"].fleet.procs["T-SH"]
    proc.terminate()
    proc.wait(10)
    deadline = time.monotonic() + 45
    while True:   # until the trunk exports T-SH down and the parent's chain avoids sh-site
        t0 = time.monotonic()
        r = md.key_pair("sae-bj1", "sae-sh1", 1)
        took = time.monotonic() - t0
        body = json.dumps((r.get("error") or {}).get("body") or {})
        if r["ok"] or "pqc-wan" in body or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if r["ok"]:   # post-quantum crossings built: the key is at the post-quantum level
        assert r["extension"]["qusec_security_level"] == "pqc", r
    else:
        assert r["error"]["status"] == 503 and "pqc-wan" in body, r
        assert took < 5.0        # refused at once, before any key is made
    other = md.key_pair("sae-bj3", "sae-jn", 1)   # over bj-site only: unaffected
    assert other["ok"], other
    # where every domain's policy allows the post-quantum level, the key crosses the PQC link's
    # WAN link (BJ3 ~ SH3, each end's PQC link server on its own address there)
    policy = md.state_dir / "pqc-policy.toml"
    policy.write_text('[default]\naction = "allow"\nsecurity_level = "qkd"\nallow_pqc_fallback = true\n')
    md.reload_policy(policy)
    r = md.key_pair("sae-bj1", "sae-sh1", 1)
    assert r["ok"], r
    ext = r["extension"]
    assert ext["qusec_security_level"] == "pqc" and r["path"] == ["BJ1", "BJ3"], ext
    assert [(d["domain"], d["crossing"]) for d in ext["qusec_domains"]] == [("shanghai", "pqc-wan")]
    wan = next(c for c in md.plan.crossings if c.id == "pqc-wan")
    assert md.domains["beijing"].agents["BJ3"]["pqc_addr"] == f"{wan.ip_of('BJ3')}:7100"
