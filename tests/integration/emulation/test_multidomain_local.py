"""Three domains under a parent controller, as local processes: every domain QuSeC exports its
borders from its live agents, the parent chains domains by what they carry, a failed interworking
KME moves the chain to the post-quantum link, and a parent that is gone stops nothing inside."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from mininet_topos import topology
from mininet_topos.launch.domains import MultiDomainNetwork
from quseccontroller.abstract import Reach
from quseccontroller.parent.chain import ChainRequest
from quseccontroller.parent.client import ParentClient, ParentRefused

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FULL = Reach(rate_bps=1e6, stored_bits=10**6, hops=1)


@pytest.fixture(scope="module")
def md(tmp_path_factory):
    topo = topology.load("beijing_shanghai3")
    with MultiDomainNetwork(topo, tmp_path_factory.mktemp("md3"), interval_s=1.0) as net:
        net.wait_exported()
        yield net


def chain(net: MultiDomainNetwork, domain: str, dst_sae: str, src_reach: dict) -> object:
    doc = json.loads(net.network_json.read_text())
    d = doc["domains"][domain]

    async def ask():
        c = ParentClient(doc["parent"]["grpc"], doc["parent"]["ca_cert"], d["parent_cert"], d["parent_key"])
        try:
            return await c.choose(ChainRequest(domain, dst_sae, 256, src_reach))
        finally:
            await c.close()
    return asyncio.run(ask())


def until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_network_json_names_the_parent_and_every_domain(md) -> None:
    doc = json.loads(md.network_json.read_text())
    assert set(doc["domains"]) == {"beijing", "trunk", "shanghai"} and doc["parent"]["grpc"]
    for dom, d in doc["domains"].items():
        inner = json.loads(open(d["network"]).read())
        assert set(inner["nodes"]) == set(md.topology.domain_view(dom).nodes)


def test_chains_follow_what_the_domains_export_and_a_failed_site_moves_to_pqc(md) -> None:
    def ask():
        try:
            return chain(md, "beijing", "sae-sh1", {"BJ-IW": FULL, "BJ3": FULL})
        except ParentRefused as exc:   # an export late on a loaded machine: ask again
            assert exc.reason in ("unknown_sae", "domain_down"), exc
            return None
    c = until(ask, 15, "no chain")
    assert [s.domain for s in c.segments] == ["beijing", "trunk", "shanghai"] and c.security == "qkd"
    assert [x.id for x in c.crossings] == ["bj-site", "sh-site"]
    # the trunk's KME at the Shanghai site goes away: its QuSeC exports T-SH down
    md.domains["trunk"].fleet.procs["T-SH"].terminate()
    c = until(lambda: (lambda c: c if c is not None and c.security == "pqc" else None)(ask()), 30,
              "no reroute to the PQC link")
    assert [x.id for x in c.crossings] == ["pqc-wan"]
    assert [(s.domain, s.entry, s.exit) for s in c.segments] == [("beijing", "", "BJ3"), ("shanghai", "SH3", "")]


def test_inside_a_domain_keys_flow_while_the_parent_is_gone(md) -> None:
    md.parent.stop()
    until(lambda: md.parent_status("beijing").get("error"), 15, "the parent link did not notice")
    assert md.parent_status("beijing")["ok"] is False
    out = subprocess.run([sys.executable, "-m", "mininet_topos.cli", "key", "--network",
                          str(md.domains["beijing"].network_json), "sae-bj1", "sae-bj3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "all keys match" in out.stdout, out.stdout + out.stderr
    with pytest.raises((ParentRefused, OSError, Exception)):
        chain(md, "beijing", "sae-sh1", {"BJ-IW": FULL})
