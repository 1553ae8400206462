"""A key crossing domains end to end, as local processes (beijing_shanghai3 under its parent):
sae-bj1 at BJ1 (Beijing) asks its vKMS for a key shared with sae-sh1 at SH1 (Shanghai) over
ETSI 014; the key is relayed to the Beijing site's KME, passed over ETSI GS QKD 020 to the
trunk, relayed along it, passed over 020 again at the Shanghai site and relayed to SH1; the
master's enc_keys answers once it is stored there (its key_extension naming every domain's
segment, no node inside one), and sae-sh1 fetches the same key by ID. No
copy is left anywhere after delivery; a void at the first site reaches the key two domains on; with
the Shanghai site's trunk KME down the chain goes over the PQC link, which the default policy
refuses; with the
parent gone, the same request is a 503 at once."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from kms_agents.client import Etsi014Client, Etsi014Error
from mininet_topos import topology
from mininet_topos.launch.domains import MultiDomainNetwork

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def md(tmp_path_factory):
    topo = topology.load("beijing_shanghai3")
    with MultiDomainNetwork(topo, tmp_path_factory.mktemp("md3x"), interval_s=1.0) as net:
        net.wait_exported()
        yield net


def client(net: MultiDomainNetwork, domain: str, sae: str) -> Etsi014Client:
    doc = json.loads(net.domains[domain].network_json.read_text())
    entry = doc["saes"][sae]
    node = doc["nodes"][entry["node"]]
    return Etsi014Client(node["etsi014_url"], net.domains[domain].pki.ca_cert, entry["cert"], entry["key"],
                         timeout=30.0, kme_node=entry["node"])


def events(net: MultiDomainNetwork, domain: str, kind: str) -> list[dict]:
    return [e for e in net.domains[domain].operator.events(timeout=5)["events"] if e["kind"] == kind]


def held(net: MultiDomainNetwork, key_id: str) -> list[str]:
    """Where any row of ``key_id`` with key material is still kept (every agent's key store)."""
    out = []
    for dom, n in net.domains.items():
        for node in n.agents:
            db = Path(n.state_dir) / node / "keys.db"
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                for table in ("e2e_key", "etsi020_rx", "etsi020_tx"):
                    if table in tables and con.execute(f"SELECT 1 FROM {table} WHERE key_id = ? AND "
                                                       "material IS NOT NULL", (key_id,)).fetchone():
                        out.append(f"{dom}/{node}:{table}")
            finally:
                con.close()
    return out


def enc_until_chained(master: Etsi014Client, timeout: float = 30.0):
    """enc_keys once the parent has every domain's export with its SAEs (a loaded machine may be
    late: until then the SAE is unknown, 400, or a domain down, 503)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return master.enc_keys("sae-sh1", 1)
        except Etsi014Error as exc:
            if time.monotonic() > deadline or exc.status not in (400, 503):
                raise
            time.sleep(1.0)


def test_a_key_crosses_both_sites_and_is_gone_everywhere_once_fetched(md) -> None:
    with client(md, "beijing", "sae-bj1") as master, client(md, "shanghai", "sae-sh1") as slave:
        keys = enc_until_chained(master)
        assert len(keys) == 1
        kid = keys[0].key_id
        ext = keys[0].key_extension
        assert ext["qusec_route_type"] == "indirect" and ext["qusec_security_level"] == "qkd"
        assert ext["qusec_paths"][0][0] == "BJ1" and ext["qusec_paths"][0][-1] == "BJ-IW"
        # every domain beyond the first, as each reports its segment: where the key entered and
        # left it, its hops and level; no node inside another domain
        assert ext["qusec_domains"] == [
            {"domain": "trunk", "crossing": "bj-site", "entry": "T-BJ", "exit": "T-SH", "hops": 5, "level": "qkd"},
            {"domain": "shanghai", "crossing": "sh-site", "entry": "SH-IW", "hops": 2, "level": "qkd"}]
        inside = {n for d in ("trunk", "shanghai") for n in md.domains[d].agents} - {"T-BJ", "T-SH", "SH-IW"}
        assert not inside & set(json.dumps(ext).replace('"', " ").replace(",", " ").split())
        got = slave.dec_keys("sae-bj1", [kid])
        assert [(k.key_id, k.key) for k in got] == [(kid, keys[0].key)]
        with pytest.raises(Etsi014Error) as again:   # delivered once: gone
            slave.dec_keys("sae-bj1", [kid])
        assert again.value.status == 400
    # each domain's QuSeC authorised its own segment: Beijing and the trunk to their exit KMEs
    # with a handoff over their site, Shanghai from its site's KME to SH1
    bj = [e for e in events(md, "beijing", "path_granted") if e.get("dst_sae") == "sae-sh1"]
    assert bj and bj[-1]["crossing"] == "bj-site" and bj[-1]["peer_kme"] == "T-BJ"
    assert bj[-1]["paths"][0][0] == "BJ1" and bj[-1]["paths"][0][-1] == "BJ-IW"
    tr = [e for e in events(md, "trunk", "path_granted") if e.get("dst_sae") == "sae-sh1"]
    assert tr and tr[-1]["crossing"] == "sh-site" and tr[-1]["peer_kme"] == "SH-IW"
    assert tr[-1]["paths"][0][0] == "T-BJ" and tr[-1]["paths"][0][-1] == "T-SH"
    sh = [e for e in events(md, "shanghai", "path_granted") if e.get("dst_sae") == "sae-sh1"]
    assert sh and "crossing" not in sh[-1] and sh[-1]["src_sae"] == "sae-bj1"
    assert sh[-1]["paths"][0][0] == "SH-IW" and sh[-1]["paths"][0][-1] == "SH1"
    assert held(md, kid) == []
    doc = json.loads(md.network_json.read_text())
    assert doc["interworking"]["bj-site"]["T-BJ"]["etsi020_url"].startswith("https://")


def test_an_sae_no_domain_has_is_a_400(md) -> None:
    with client(md, "beijing", "sae-bj1") as master:
        with pytest.raises(Etsi014Error) as err:
            master.enc_keys("sae-nowhere", 1)
    assert err.value.status == 400 and "sae-nowhere" in json.dumps(err.value.body)


def test_a_void_at_the_first_site_reaches_the_key_two_domains_on(md) -> None:
    from kms_agents.etsi020.model import void_body
    from tests.helpers.etsi020_peer import SpecClient, client_context
    with client(md, "beijing", "sae-bj1") as master, client(md, "shanghai", "sae-sh1") as slave:
        kid = enc_until_chained(master)[0].key_id
        assert held(md, kid) == ["shanghai/SH1:e2e_key"]
        # what BJ-IW sends after a relay it handed over failed behind it: a void to T-BJ
        bj = md.domains["beijing"].pki.nodes["BJ-IW"]
        url = json.loads(md.network_json.read_text())["interworking"]["bj-site"]["T-BJ"]["etsi020_url"]
        peer = SpecClient(url, client_context(md.domains["trunk"].pki.ca_cert, bj.cert, bj.key))
        r = peer.void(void_body([kid], "sae-bj1", ["sae-sh1"], None))
        assert r.status == 200, r.body
        deadline = time.monotonic() + 15
        while held(md, kid) and time.monotonic() < deadline:   # trunk -> T-SH -> SH-IW -> SH1
            time.sleep(0.2)
        assert held(md, kid) == []
        with pytest.raises(Etsi014Error) as err:
            slave.dec_keys("sae-bj1", [kid])
        assert err.value.status == 400


def test_with_a_sites_kme_down_the_chain_moves_to_the_pqc_link_which_the_default_policy_refuses(md) -> None:
    md.domains["trunk"].fleet.procs["T-SH"].terminate()   # the trunk's KME at the Shanghai site
    deadline = time.monotonic() + 40
    with client(md, "beijing", "sae-bj1") as master:
        while True:   # until the trunk exports T-SH down and the parent's chain avoids sh-site
            t0 = time.monotonic()
            with pytest.raises(Etsi014Error) as err:
                master.enc_keys("sae-sh1", 1)
            took = time.monotonic() - t0
            if "post-quantum" in err.value.body["message"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    # the default policy does not allow the post-quantum level (test_interdomain_pqc_local.py: one that does)
    assert err.value.status == 503 and "does not allow the post-quantum level" in err.value.body["message"], \
        err.value.body
    assert took < 5.0   # refused at once, before any key is made


def test_with_the_parent_gone_an_inter_domain_request_is_a_503_at_once(md) -> None:
    md.parent.stop()
    with client(md, "beijing", "sae-bj1") as master:
        t0 = time.monotonic()
        with pytest.raises(Etsi014Error) as err:
            master.enc_keys("sae-sh1", 1)
        took = time.monotonic() - t0
    assert err.value.status == 503 and "parent controller" in err.value.body["message"], err.value.body
    assert took < 5.0
