"""Keys between domains over the post-quantum link and from a border node, as local processes
(beijing_shanghai3 under its parent, with one more SAE at Beijing's site KME, BJ-IW).

* An SAE at a site's KME: its domain's segment is empty, the key goes straight over the site.
* With the Shanghai site's trunk KME down, the chain takes the PQC link BJ3 ~ SH3 where the source
  domain's policy allows the post-quantum level: the key is relayed to BJ3 over QKD, crosses the
  link under an ML-KEM-768 secret, is relayed on from SH3 to SH1, and both SAEs are told its level
  is ``pqc``; from sae-bj3 at BJ3 itself it goes straight over the link. Where the policy does not
  allow it, the master gets a 503 naming why, at once.
* The link's server takes only its peer: a certificate of the wrong domain, node or role is
  refused (TLS, or PERMISSION_DENIED), and a key passed without an agreed secret is not taken.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kms_agents.client import Etsi014Client, Etsi014Error
from kms_agents.proto import relay_pb2, relay_pb2_grpc
from kms_agents.relay import crypto, wire
from kms_agents.relay.messages import RelayMessage
from kms_agents.relay.pqclink import header
from mininet_topos import topology
from mininet_topos.launch.domains import MultiDomainNetwork
from mininet_topos.model import Sae
from mininet_topos.provision.pki import issue_pair

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICY = """
[default]
action = "allow"

[[rules]]
name = "post-quantum-ok"
match = { src_sae = "sae-bj[13]" }
allow_pqc_fallback = true
"""


@pytest.fixture(scope="module")
def md(tmp_path_factory):
    topo = topology.load("beijing_shanghai3")
    topo.saes["sae-bjiw"] = Sae("sae-bjiw", "BJ-IW")
    tmp = tmp_path_factory.mktemp("md3pqc")
    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    with MultiDomainNetwork(topo, tmp / "net", interval_s=1.0, policy=policy) as net:
        net.wait_exported()
        yield net


def client(net: MultiDomainNetwork, domain: str, sae: str) -> Etsi014Client:
    doc = json.loads(net.domains[domain].network_json.read_text())
    entry = doc["saes"][sae]
    node = doc["nodes"][entry["node"]]
    return Etsi014Client(node["etsi014_url"], net.domains[domain].pki.ca_cert, entry["cert"], entry["key"],
                         timeout=30.0, kme_node=entry["node"])


def enc_until(master: Etsi014Client, ok, timeout: float = 40.0):
    """enc_keys for sae-sh1 until ``ok(keys)`` (the parent's view catches up with exports)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            keys = master.enc_keys("sae-sh1", 1)
            if ok(keys) or time.monotonic() > deadline:
                return keys
        except Etsi014Error as exc:
            if time.monotonic() > deadline or exc.status not in (400, 503):
                raise
        time.sleep(0.5)


def fetched(net: MultiDomainNetwork, master_sae: str, key) -> dict:
    with client(net, "shanghai", "sae-sh1") as slave:
        got = slave.dec_keys(master_sae, [key.key_id])
    assert [(k.key_id, k.key) for k in got] == [(key.key_id, key.key)]
    return got[0].key_extension


def test_a_key_from_an_sae_at_a_sites_kme_goes_straight_over_the_site(md) -> None:
    with client(md, "beijing", "sae-bjiw") as master:
        keys = enc_until(master, lambda ks: True)
    ext = keys[0].key_extension
    assert ext["qusec_security_level"] == "qkd" and ext["qusec_paths"] == [["BJ-IW"]], ext
    assert ext["qusec_hops"] == 0
    assert fetched(md, "sae-bjiw", keys[0])["qusec_security_level"] == "qkd"


@pytest.fixture(scope="module")
def site_down(md):
    md.domains["trunk"].fleet.procs["T-SH"].terminate()   # the trunk's KME at the Shanghai site
    return md


def test_with_the_shanghai_site_down_a_key_crosses_the_pqc_link_and_both_saes_see_pqc(site_down) -> None:
    with client(site_down, "beijing", "sae-bj1") as master:
        keys = enc_until(master, lambda ks: ks[0].key_extension["qusec_security_level"] == "pqc")
    ext = keys[0].key_extension
    assert ext["qusec_security_level"] == "pqc", ext
    assert ext["qusec_paths"][0][0] == "BJ1" and ext["qusec_paths"][0][-1] == "BJ3"
    assert ext["qusec_domains"] == [{"domain": "shanghai", "crossing": "pqc-wan", "entry": "SH3",
                                     "hops": 1, "level": "pqc"}], ext   # SH3 - SH1
    slave_ext = fetched(site_down, "sae-bj1", keys[0])
    assert slave_ext["qusec_security_level"] == "pqc" and slave_ext["qusec_src_node"] == "SH3", slave_ext


def test_a_key_from_the_pqc_links_own_node_goes_straight_over_it(site_down) -> None:
    with client(site_down, "beijing", "sae-bj3") as master:
        keys = enc_until(master, lambda ks: ks[0].key_extension["qusec_security_level"] == "pqc")
    ext = keys[0].key_extension
    assert ext["qusec_security_level"] == "pqc" and ext["qusec_paths"] == [["BJ3"]], ext
    assert fetched(site_down, "sae-bj3", keys[0])["qusec_security_level"] == "pqc"


def test_where_the_policy_forbids_the_post_quantum_level_the_master_gets_a_503_saying_so(site_down) -> None:
    deadline = time.monotonic() + 40
    with client(site_down, "beijing", "sae-bjiw") as master:
        while True:   # until the parent's chain avoids the Shanghai site
            t0 = time.monotonic()
            with pytest.raises(Etsi014Error) as err:
                master.enc_keys("sae-sh1", 1)
            took = time.monotonic() - t0
            if "post-quantum" in err.value.body["message"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    message = err.value.body["message"]
    assert err.value.status == 503 and "does not allow the post-quantum level" in message, err.value.body
    assert "pqc-wan" in message and took < 5.0


# -- attacks on the PQC link's server ---------------------------------------------------------
def pqc_call(net: MultiDomainNetwork, cert: str, key: str, request) -> grpc.RpcError:
    addr = net.domains["shanghai"].agents["SH3"]["pqc_addr"]
    creds = grpc.ssl_channel_credentials(Path(net.domains["shanghai"].pki.ca_cert).read_bytes(),
                                         Path(key).read_bytes(), Path(cert).read_bytes())
    with grpc.secure_channel(addr, creds) as channel:
        stub = relay_pb2_grpc.KeyRelayStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Relay(request, timeout=5)
    return err.value


def sealed_without_agreement() -> relay_pb2.RelayRequest:
    """A pass BJ3 could send, sealed with a pad and MAC key of its own making (no agreed secret)."""
    kid = "0b5f3c1e-8d7a-4a55-9b62-1f6b1b2c3d4e"
    h = header("pqc-wan", int(time.time() * 1e6), kid, "BJ3", "SH3", 256, "sae-bj1", ["sae-sh1"], [])
    ct, tag = crypto.seal(h, bytes(32), bytes(32), bytes(32))
    return wire.to_request(RelayMessage(h, ct, tag))


def test_the_pqc_link_takes_only_its_peer_and_only_keys_under_an_agreed_secret(md, tmp_path) -> None:
    bj, sh = md.domains["beijing"].pki, md.domains["shanghai"].pki
    req = sealed_without_agreement()
    # BJ3's name on a certificate of the Shanghai CA (another domain's): not trusted on this link
    ca_key = serialization.load_pem_private_key(Path(sh.ca_key).read_bytes(), None)
    ca = x509.load_pem_x509_certificate(Path(sh.ca_cert).read_bytes())
    forged = issue_pair(ca_key, ca.subject, "node", "BJ3", tmp_path)
    assert pqc_call(md, forged.cert, forged.key, req).code() == grpc.StatusCode.UNAVAILABLE
    # a Shanghai node's own certificate: likewise refused in the handshake
    assert pqc_call(md, sh.node("SH2").cert, sh.node("SH2").key, req).code() == grpc.StatusCode.UNAVAILABLE
    # Beijing's CA, but another node, or an SAE: refused by name and role
    err = pqc_call(md, bj.node("BJ1").cert, bj.node("BJ1").key, req)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "node BJ3" in err.details()
    err = pqc_call(md, bj.sae("sae-bj1").cert, bj.sae("sae-bj1").key, req)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    # the peer itself, but keys sealed under no agreed secret: not taken
    err = pqc_call(md, bj.node("BJ3").cert, bj.node("BJ3").key, req)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "no agreed secret" in err.details()
