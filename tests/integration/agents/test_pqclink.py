"""The PQC link between two domains' KMEs, both ends in this process over real gRPC and TLS:
each domain its own CA, each end trusting the other's for the link only. Keys handed off at one
end arrive at the other's onward step whole, under their IDs, with the level ``pqc``; the acks'
domains come back; a failure there fails the handoff and voids the keys over the link; a key
the far end did not agree a secret for is not taken; only the link's peer may call."""
from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from kms_agents.config import PqcConfig, PqcLinkPeer, TlsConfig
from kms_agents.identity import NodeIdentity
from kms_agents.proto import relay_pb2, relay_pb2_grpc
from kms_agents.relay.messages import Reason, RelayFailure
from kms_agents.relay.plan import Handoff
from kms_agents.relay.pqclink import PqcLink
from tests.helpers.pki import make_ca, make_cert, write
from mininet_topos.launch.domains import free_port

pytestmark = pytest.mark.integration


class Onward:
    """The interworking Crossing's onward step as the PQC link calls it (records, may fail)."""

    def __init__(self) -> None:
        self.got: list = []
        self.voids: list = []
        self.fail: Exception | None = None

    def onward(self, req, *, level: str = "qkd") -> dict:
        if self.fail is not None:
            raise self.fail
        self.got.append((req, level))
        # its ack extension (ETSI 020's E<PEN>_qusec_domains): this domain's segment and beyond
        return {"E32473_qusec_domains": [{"entry": "SH3", "hops": 2, "level": "qkd"}]}

    def voided(self, peer: str, key_ids: list[str]) -> None:
        self.voids.append((peer, list(key_ids)))


def end(tmp: Path, me: str, ca, peer: str, peer_ca_file: Path, my_port: int, peer_port: int,
        onward) -> tuple[PqcLink, TlsConfig]:
    cert, key = make_cert(ca, me)
    cpath, kpath = write(cert, key, tmp / me, me)
    ca_path, _ = write(ca[0], ca[1], tmp / me, "ca")
    tls = TlsConfig(ca_cert=str(ca_path), cert=str(cpath), key=str(kpath))
    cfg = PqcConfig(listen=f"127.0.0.1:{my_port}", links=[
        PqcLinkPeer(id="wan", peer=peer, addr=f"127.0.0.1:{peer_port}", ca_cert=str(peer_ca_file))])
    ident = NodeIdentity.load(me, cpath, kpath, ca_path)
    return PqcLink(cfg, tls, me, ident, onward), tls


@pytest.fixture()
def link(tmp_path):
    bj_ca, sh_ca = make_ca("beijing-ca"), make_ca("shanghai-ca")
    files = {}
    for name, ca in (("beijing", bj_ca), ("shanghai", sh_ca)):
        write(ca[0], ca[1], tmp_path / "cas", name)
        files[name] = tmp_path / "cas" / f"{name}.pem"
    p_bj, p_sh = free_port(), free_port()
    onward = Onward()
    bj, _ = end(tmp_path, "BJ3", bj_ca, "SH3", files["shanghai"], p_bj, p_sh, Onward())
    sh, _ = end(tmp_path, "SH3", sh_ca, "BJ3", files["beijing"], p_sh, p_bj, onward)
    bj.start()
    sh.start()
    yield bj, sh, onward, (bj_ca, sh_ca, tmp_path, p_sh)
    bj.stop()
    sh.stop()


HANDOFF = Handoff("wan", "pqc", "shanghai", "SH3", "BJ3")
KEYS = [("0b5f3c1e-8d7a-4a55-9b62-1f6b1b2c3d4e", bytes(range(32))),
        ("1c6f3c1e-8d7a-4a55-9b62-1f6b1b2c3d4e", bytes(range(32, 64)))]


def test_keys_cross_whole_under_their_ids_at_the_pqc_level_and_the_domains_come_back(link) -> None:
    bj, _sh, onward, _ = link
    domains = bj.hand_off(HANDOFF, "sae-bj1", ("sae-sh1",), KEYS, 5.0)
    assert len(onward.got) == 1
    req, level = onward.got[0]
    assert level == "pqc" and req.peer == "BJ3" and req.initiator == "sae-bj1" and req.targets == ("sae-sh1",)
    assert [(k.key_id, k.material) for k in req.keys] == KEYS
    assert domains == [{"entry": "SH3", "hops": 2, "level": "pqc", "domain": "shanghai", "crossing": "wan"}]
    bj.hand_off(HANDOFF, "sae-bj1", ("sae-sh1",), KEYS[:1], 5.0)   # one key: its own id names the batch
    assert [(k.key_id, k.material) for k in onward.got[1][0].keys] == KEYS[:1]


def test_a_failure_at_the_far_end_fails_the_handoff_and_voids_the_keys_there(link) -> None:
    bj, _sh, onward, _ = link
    onward.fail = RelayFailure(Reason.UNREACHABLE, "no path to SH1")
    with pytest.raises(RelayFailure) as err:
        bj.hand_off(HANDOFF, "sae-bj1", ("sae-sh1",), KEYS, 5.0)
    assert err.value.reason is Reason.UNREACHABLE and "no path to SH1" in err.value.message
    assert onward.voids == [("BJ3", [k for k, _ in KEYS])]


def test_a_handoff_over_a_link_this_node_does_not_have_is_refused(link) -> None:
    bj, *_ = link
    with pytest.raises(RelayFailure) as err:
        bj.hand_off(Handoff("other", "pqc", "shanghai", "SH3", "BJ3"), "sae-bj1", ("sae-sh1",), KEYS, 5.0)
    assert err.value.reason is Reason.UNMET


def call(tmp: Path, port: int, server_ca, cert_key, request) -> grpc.RpcError:
    cpath, kpath = write(*cert_key, tmp / "caller", "caller")
    spath, _ = write(server_ca[0], server_ca[1], tmp / "caller", "server-ca")
    creds = grpc.ssl_channel_credentials(spath.read_bytes(), kpath.read_bytes(), cpath.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        with pytest.raises(grpc.RpcError) as err:
            relay_pb2_grpc.KeyRelayStub(channel).Relay(request, timeout=5)
    return err.value


def test_only_the_links_peer_of_its_ca_may_call(link) -> None:
    _bj, _sh, onward, (bj_ca, sh_ca, tmp, port) = link
    req = relay_pb2.RelayRequest(version="qusec-relay/1", link_id="wan", path_id="wan")
    # BJ3's name from the Shanghai CA: the link trusts Beijing's CA only
    assert call(tmp, port, sh_ca, make_cert(sh_ca, "BJ3"), req).code() == grpc.StatusCode.UNAVAILABLE
    err = call(tmp, port, sh_ca, make_cert(bj_ca, "BJ1"), req)          # Beijing's, another node
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "node BJ3" in err.details()
    err = call(tmp, port, sh_ca, make_cert(bj_ca, "BJ3", role="sae"), req)   # Beijing's, an SAE
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = call(tmp, port, sh_ca, make_cert(bj_ca, "BJ3"), relay_pb2.RelayRequest(
        version="qusec-relay/1", link_id="lan", path_id="lan"))         # a link it does not have
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert onward.got == []


def test_keys_sealed_without_an_agreed_secret_are_not_taken(link) -> None:
    from kms_agents.relay import crypto, wire
    from kms_agents.relay.messages import RelayMessage
    from kms_agents.relay.pqclink import header
    _bj, _sh, onward, (bj_ca, sh_ca, tmp, port) = link
    h = header("wan", 1, KEYS[0][0], "BJ3", "SH3", 256, "sae-bj1", ["sae-sh1"], [])
    ct, tag = crypto.seal(h, KEYS[0][1], bytes(32), bytes(32))
    err = call(tmp, port, sh_ca, make_cert(bj_ca, "BJ3"), wire.to_request(RelayMessage(h, ct, tag)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "no agreed secret" in err.details()
    assert onward.got == []
