"""Who may call what, against real agent processes: every server checks the role of the caller's
certificate (urn:qusec:ROLE:NAME), and every client checks the identity of the KME it reached."""
from __future__ import annotations

import json
import ssl

import grpc
import pytest

from kms_agents import rpc
from kms_agents.client import Etsi004Client, Etsi014Client, Etsi014Error, PeerIdentityError
from kms_agents.proto import etsi004_pb2 as pb004
from kms_agents.proto import etsi004_pb2_grpc, peer_pb2, peer_pb2_grpc, relay_pb2, relay_pb2_grpc
from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, forged_cert, node_cert, refusals, small_topology

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with LocalNetwork(small_topology(), tmp_path_factory.mktemp("ids"), with_qusec=False) as n:
        n.doc = json.loads(n.network_json.read_text())
        yield n


def pki_dir(net):
    return net.state_dir / "pki"


def channel(net, node: str, addr: str, cert: tuple[str, str]) -> grpc.Channel:
    creds = rpc.channel_credentials(net.doc["ca_cert"], *cert)
    return grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", node)])


def test_node_certificate_cannot_act_as_an_sae_on_etsi014(net) -> None:
    before = refusals(net.agents["A"], "etsi014", "wrong_role")
    for node in ("A", "B"):          # A's own certificate and its neighbour's alike
        cert, key = node_cert(net.state_dir, node)
        with Etsi014Client(net.doc["nodes"]["A"]["etsi014_url"], net.doc["ca_cert"], cert, key,
                           kme_node="A") as c:
            with pytest.raises(Etsi014Error) as e:
                c.enc_keys("sae-b1")
            assert e.value.status == 401 and e.value.body is None
            status, _ = c.request("GET", "/api/v1/keys/sae-b1/status")
            assert status == 401
    # counted once per connection (the identity is read at the handshake)
    assert refusals(net.agents["A"], "etsi014", "wrong_role") == before + 2


def test_node_certificate_cannot_open_etsi004_streams(net) -> None:
    ch = channel(net, "A", net.doc["nodes"]["A"]["etsi004_addr"], node_cert(net.state_dir, "B"))
    stub = etsi004_pb2_grpc.KeyDeliveryStub(ch)
    with pytest.raises(grpc.RpcError) as e:
        stub.OpenConnect(pb004.OpenConnectRequest(source="qkd://sae-b1", destination="qkd://sae-a1"), timeout=5)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs an SAE certificate; the caller's certificate names node:B" in e.value.details()
    ch.close()


def test_sae_certificate_cannot_relay_or_deliver_keys_as_a_node(net, tmp_path) -> None:
    # an SAE certificate carrying the name of A's neighbour B (and B's DNS name) is still an SAE
    fake_b = forged_cert(pki_dir(net), tmp_path, "B", "sae")
    ch = channel(net, "A", net.doc["nodes"]["A"]["relay_addr"], fake_b)
    before = refusals(net.agents["A"], "peer", "wrong_role")
    with pytest.raises(grpc.RpcError) as e:
        peer_pb2_grpc.PeerKmsStub(ch).DeliverDirect(peer_pb2.DirectDelivery(
            link_id="A-B", master_sae_id="sae-b1", slave_sae_ids=["sae-a1"],
            keys=[peer_pb2.DirectKey(key_id="k", link_key_ids=["x"], size_bits=256)]), timeout=5)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.details() == "PeerKms needs a node certificate; the caller's certificate names sae:B"
    assert refusals(net.agents["A"], "peer", "wrong_role") == before + 1
    with pytest.raises(grpc.RpcError) as e:
        relay_pb2_grpc.KeyRelayStub(ch).Relay(relay_pb2.RelayRequest(version="qusec-relay/1", path_id="p"),
                                              timeout=5)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "names sae:B" in e.value.details()
    ch.close()


def test_sae_certificate_cannot_pose_as_another_sae(net, tmp_path) -> None:
    # the controller's certificate (or any non-SAE role) is no SAE either, whatever its name
    fake = forged_cert(pki_dir(net), tmp_path, "sae-a1", "controller")
    with Etsi014Client(net.doc["nodes"]["A"]["etsi014_url"], net.doc["ca_cert"], *fake, kme_node="A") as c:
        with pytest.raises(Etsi014Error) as e:
            c.enc_keys("sae-b1")
        assert e.value.status == 401


def test_certificate_without_an_identity_is_unauthenticated(net, tmp_path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    import datetime as dt
    ca_cert = x509.load_pem_x509_certificate((pki_dir(net) / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((pki_dir(net) / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME,
                                                                                  "sae-a1")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
            .sign(ca_key, hashes.SHA256()))   # CN sae-a1, as certificates were before: no urn:qusec URI
    from tests.helpers.pki import write
    c, k = write(cert, key, tmp_path, "cn-only")
    before = refusals(net.agents["A"], "etsi014", "no_identity")
    with Etsi014Client(net.doc["nodes"]["A"]["etsi014_url"], net.doc["ca_cert"], c, k, kme_node="A") as cl:
        with pytest.raises(Etsi014Error) as e:
            cl.enc_keys("sae-b1")
        assert e.value.status == 401
    assert refusals(net.agents["A"], "etsi014", "no_identity") == before + 1
    app = Etsi004Client(net.doc["nodes"]["A"]["etsi004_addr"], net.doc["ca_cert"], c, k, kme_node="A")
    with pytest.raises(grpc.RpcError) as e:
        app.open_connect("qkd://sae-a1", "qkd://sae-b1")
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and "no urn:qusec: identity" in e.value.details()
    app.close()


def test_another_node_cannot_pose_as_the_kme_on_loopback(net) -> None:
    # every node listens on 127.0.0.1 and its certificate names 127.0.0.1: the address proves
    # nothing. A client made for A's KME but pointed at B's refuses B by its identity.
    sae = net.doc["saes"]["sae-a1"]
    b_url = net.doc["nodes"]["B"]["etsi014_url"]
    with Etsi014Client(b_url, net.doc["ca_cert"], sae["cert"], sae["key"]) as unchecked:
        assert unchecked.request("GET", "/api/v1/keys/sae-b1/status")[0] == 401   # TLS accepted B
    with Etsi014Client(b_url, net.doc["ca_cert"], sae["cert"], sae["key"], kme_node="A") as c:
        with pytest.raises(PeerIdentityError, match="presented the certificate of node:B, not of node:A"):
            c.status("sae-b1")
    with Etsi014Client(net.doc["nodes"]["A"]["etsi014_url"], net.doc["ca_cert"], sae["cert"], sae["key"],
                       kme_node="A") as c:
        assert c.status("sae-b1")["source_KME_ID"] == "A"
    app = Etsi004Client(net.doc["nodes"]["B"]["etsi004_addr"], net.doc["ca_cert"], sae["cert"], sae["key"],
                        kme_node="A")
    with pytest.raises(PeerIdentityError, match="node:B, not of node:A"):
        app.open_connect("qkd://sae-a1", "qkd://sae-b1")
    app.close()


def test_etsi014_answers_the_sae_its_certificate_names_only(net) -> None:
    # sae-a2 asking with sae-a1's key ID path parameters still acts as sae-a2 (its certificate)
    saes = Saes(net.doc)
    keys = saes.kme("sae-a1").enc_keys("sae-b1")
    with pytest.raises(Etsi014Error) as e:
        saes.kme("sae-b2").dec_keys("sae-a1", [keys[0].key_id])
    assert e.value.status == 401
    assert saes.kme("sae-b1").dec_keys("sae-a1", [keys[0].key_id])[0].key == keys[0].key
    saes.close()


def test_tls_without_client_certificate_is_refused(net) -> None:
    url = net.doc["nodes"]["A"]["etsi014_url"]
    host, port = url[len("https://"):].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=net.doc["ca_cert"])
    import http.client
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        conn.request("GET", "/api/v1/keys/sae-b1/status")
        conn.getresponse().read()
    conn.close()
