"""Hybrid (QKD + ML-KEM-768) keys agreed between the end vKMSs, signed with node certificates."""
from __future__ import annotations

import datetime as dt
import os

import pytest

from kms_agents.relay import hybrid
from tests.helpers.pki import make_ca, make_cert

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module")
def pki():
    ca = make_ca()
    ids = {}
    for node in ("A", "E", "M"):
        cert, key = make_cert(ca, node)
        ids[node] = hybrid.NodeIdentity(node, cert, key, ca[0])
    other_ca = make_ca("rogue-ca")
    rogue_cert, rogue_key = make_cert(other_ca, "A")
    ids["rogue-A"] = hybrid.NodeIdentity("A", rogue_cert, rogue_key, other_ca[0])
    return ids


def exchange(pki, level="hybrid", qkd=None):
    qkd = qkd or os.urandom(32)
    init = hybrid.Initiator(pki["A"], "E", "key-1", level)
    answer, k_dst = hybrid.respond(pki["E"], init.offer, src_node="A", key_id="key-1",
                                   level=level, qkd_key=qkd, now=NOW)
    k_src = init.finish(answer, qkd, NOW)
    return qkd, k_src, k_dst


def test_hybrid_keys_match_and_differ_from_qkd_key(pki) -> None:
    qkd, k_src, k_dst = exchange(pki)
    assert k_src == k_dst and len(k_src) == len(qkd) and k_src != qkd


def test_pqc_key_does_not_depend_on_qkd_key(pki) -> None:
    _, k1, k2 = exchange(pki, "pqc")
    assert k1 == k2
    _, k3, _ = exchange(pki, "pqc")
    assert k3 != k1  # fresh ML-KEM secret each time


def test_same_qkd_key_gives_different_hybrid_keys(pki) -> None:
    qkd = os.urandom(32)
    assert exchange(pki, qkd=qkd)[1] != exchange(pki, qkd=qkd)[1]


def test_relay_cannot_substitute_its_own_offer(pki) -> None:
    # M (a relay) makes its own offer claiming to be A: its certificate names node:M
    fake = hybrid.Initiator(hybrid.NodeIdentity("A", pki["M"].cert, pki["M"].key, pki["M"].ca),
                            "E", "key-1", "hybrid")
    with pytest.raises(hybrid.HybridError, match="names node:M, not node:A"):
        hybrid.respond(pki["E"], fake.offer, src_node="A", key_id="key-1", level="hybrid",
                       qkd_key=os.urandom(32), now=NOW)


def test_cert_from_another_ca_rejected(pki) -> None:
    fake = hybrid.Initiator(pki["rogue-A"], "E", "key-1", "hybrid")
    with pytest.raises(hybrid.HybridError, match="not issued by the network CA"):
        hybrid.respond(pki["E"], fake.offer, src_node="A", key_id="key-1", level="hybrid",
                       qkd_key=os.urandom(32), now=NOW)


def test_altered_offer_rejected(pki) -> None:
    init = hybrid.Initiator(pki["A"], "E", "key-1", "hybrid")
    offer = bytearray(init.offer)
    offer[200] ^= 1  # inside the encapsulation key
    with pytest.raises(hybrid.HybridError, match="signature does not verify"):
        hybrid.respond(pki["E"], bytes(offer), src_node="A", key_id="key-1", level="hybrid",
                       qkd_key=os.urandom(32), now=NOW)


def test_offer_bound_to_key_and_level(pki) -> None:
    init = hybrid.Initiator(pki["A"], "E", "key-1", "hybrid")
    with pytest.raises(hybrid.HybridError, match="binds level/src/dst/key"):
        hybrid.respond(pki["E"], init.offer, src_node="A", key_id="key-2", level="hybrid",
                       qkd_key=os.urandom(32), now=NOW)
    with pytest.raises(hybrid.HybridError, match="binds level/src/dst/key"):
        hybrid.respond(pki["E"], init.offer, src_node="A", key_id="key-1", level="pqc",
                       qkd_key=os.urandom(32), now=NOW)


def test_answer_from_wrong_node_or_altered_rejected(pki) -> None:
    qkd = os.urandom(32)
    init = hybrid.Initiator(pki["A"], "E", "key-1", "hybrid")
    # M answers in E's place (offer says dst E): the answer's own dst field says M
    offer_for_m = hybrid.Initiator(pki["A"], "M", "key-1", "hybrid")
    ans_m, _ = hybrid.respond(pki["M"], offer_for_m.offer, src_node="A", key_id="key-1",
                              level="hybrid", qkd_key=qkd, now=NOW)
    with pytest.raises(hybrid.HybridError, match="does not answer our offer"):
        init.finish(ans_m, qkd, NOW)
    answer, _ = hybrid.respond(pki["E"], init.offer, src_node="A", key_id="key-1",
                               level="hybrid", qkd_key=qkd, now=NOW)
    bad = bytearray(answer)
    bad[100] ^= 1
    with pytest.raises(hybrid.HybridError):
        init.finish(bytes(bad), qkd, NOW)
    with pytest.raises(hybrid.HybridError, match="truncated"):
        init.finish(answer[:50], qkd, NOW)


def test_expired_certificate_rejected(pki) -> None:
    init = hybrid.Initiator(pki["A"], "E", "key-1", "hybrid")
    later = NOW + dt.timedelta(days=30)
    with pytest.raises(hybrid.HybridError, match="not valid at"):
        hybrid.respond(pki["E"], init.offer, src_node="A", key_id="key-1", level="hybrid",
                       qkd_key=os.urandom(32), now=later)


def test_qkd_level_is_not_hybrid(pki) -> None:
    with pytest.raises(hybrid.HybridError, match="not hybrid or pqc"):
        hybrid.Initiator(pki["A"], "E", "key-1", "qkd")


def test_base64_helpers() -> None:
    assert hybrid.unb64(hybrid.b64(b"\x00\xff"), "x") == b"\x00\xff"
    with pytest.raises(hybrid.HybridError, match="offer is not base64"):
        hybrid.unb64("@@@", "offer")


def test_load_from_pem_files(tmp_path, pki) -> None:
    from tests.helpers.pki import write
    ca = make_ca()
    cert, key = make_cert(ca, "A")
    c, k = write(cert, key, tmp_path, "A")
    ca_path, _ = write(ca[0], ca[1], tmp_path, "ca")
    ident = hybrid.NodeIdentity.load("A", c, k, ca_path)
    assert ident.cert == cert


def test_one_exchange_many_keys_by_context(pki) -> None:
    init = hybrid.Initiator(pki["A"], "E", "batch-1", "hybrid")
    resp = hybrid.Responder(pki["E"], init.offer, src_node="A", key_id="batch-1", level="hybrid",
                            now=NOW)
    with pytest.raises(hybrid.HybridError, match="no answer accepted"):
        init.derive(bytes(32), "k1")
    init.accept(resp.answer, NOW)
    qkd = [os.urandom(32), os.urandom(32)]
    mine = [init.derive(q, f"k{i}") for i, q in enumerate(qkd)]
    theirs = [resp.derive(q, f"k{i}") for i, q in enumerate(qkd)]
    assert mine == theirs and mine[0] != mine[1]
    assert init.derive(qkd[0], "k1") != mine[0]  # the context separates keys


def test_sae_certificate_named_like_the_node_cannot_sign_an_offer(pki) -> None:
    # the identity is the urn:qusec:node: URI, not the CN: an SAE certificate with CN "A" fails
    sae_ca = make_ca()
    cert, key = make_cert(sae_ca, "A", role="sae")
    fake = hybrid.Initiator(hybrid.NodeIdentity("A", cert, key, sae_ca[0]), "E", "key-1", "hybrid")
    e = hybrid.NodeIdentity("E", *make_cert(sae_ca, "E"), sae_ca[0])
    with pytest.raises(hybrid.HybridError, match="names sae:A, not node:A"):
        hybrid.respond(e, fake.offer, src_node="A", key_id="key-1", level="hybrid", qkd_key=os.urandom(32),
                       now=NOW)


def test_offer_and_answer_sign_the_sae_ids(pki) -> None:
    init = hybrid.Initiator(pki["A"], "E", "key-1", "hybrid", src_sae="sae-a", dst_saes=["sae-e"])
    # a relay rewrote the target SAE of the message: the signed offer names the real one
    with pytest.raises(hybrid.HybridError, match="signed for other SAEs .*sae-a -> sae-evil"):
        hybrid.Responder(pki["E"], init.offer, src_node="A", key_id="key-1", level="hybrid", now=NOW,
                         src_sae="sae-a", dst_saes=["sae-evil"])
    with pytest.raises(hybrid.HybridError, match="signed for other SAEs"):
        hybrid.Responder(pki["E"], init.offer, src_node="A", key_id="key-1", level="hybrid", now=NOW,
                         src_sae="sae-x", dst_saes=["sae-e"])
    resp = hybrid.Responder(pki["E"], init.offer, src_node="A", key_id="key-1", level="hybrid", now=NOW,
                            src_sae="sae-a", dst_saes=["sae-e"])
    init.accept(resp.answer, NOW)
    assert init.derive(bytes(32), "k") == resp.derive(bytes(32), "k")
    # the answer names the SAEs too: one made for an offer to other SAEs is refused
    other = hybrid.Initiator(pki["A"], "E", "key-1", "hybrid", src_sae="sae-a", dst_saes=["sae-e2"])
    forged = hybrid.Responder(pki["E"], other.offer, src_node="A", key_id="key-1", level="hybrid", now=NOW,
                              src_sae="sae-a", dst_saes=["sae-e2"])
    with pytest.raises(hybrid.HybridError, match="does not answer our offer"):
        init.accept(forged.answer, NOW)
