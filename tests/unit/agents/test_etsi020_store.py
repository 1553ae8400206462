"""The GS QKD 020 tables in the agent's key store: a retry is not stored twice, a key is deliverable exactly
when relayed, voids answer from the key's state, and key material leaves no bytes in any file."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from kms_agents.config import ConfigError, parse_config
from kms_agents.etsi020 import rules
from kms_agents.etsi020.model import ExtKey, ExtKeyRequest
from kms_agents.etsi020.store import ExtKeyStore, KeyIdInUse, TooMuchWaiting
from kms_agents.keystore import KeyStore, StoredKey

MATERIAL = bytes.fromhex("5a17c0de" * 8)


@pytest.fixture
def stores(tmp_path: Path):
    ks = KeyStore(tmp_path / "keys.db")
    yield ks, ExtKeyStore(ks)
    ks.close()


def _req(n=1, callback="https://y1/ack"):
    return ExtKeyRequest([ExtKey(str(uuid.uuid4()), MATERIAL) for _ in range(n)], "sae-y1", ["sae-b1"], callback)


def _on_disk(ks: KeyStore) -> bool:
    return any(MATERIAL in f.read_bytes() for f in ks.files())


def test_received_keys_become_deliverable_only_when_relayed_and_then_leave_no_bytes(stores):
    ks, ext = stores
    req = _req()
    new, known = ext.receive("Y1", req, 1.0)
    assert len(new) == 1 and known == []
    kid = new[0].key_id
    assert ks.peek(kid) is None                       # received is not deliverable
    ext.relayed([kid], [StoredKey(kid, "sae-y1", ["sae-b1"], MATERIAL)], 2.0)
    assert ks.peek(kid).material == MATERIAL
    assert ext.counts()["outbox"] == 1               # the ack is queued, with no material in it
    assert ks.fetch("sae-y1", "sae-b1", [kid])[0].material == MATERIAL
    assert not _on_disk(ks)
    assert ext.void_received("Y1", [kid], "sae-y1", ["sae-b1"])[0].status == "failed to void"


def test_a_retry_is_not_stored_twice_and_a_reused_key_id_is_refused(stores):
    ks, ext = stores
    req = _req()
    ext.receive("Y1", req, 1.0)
    new, known = ext.receive("Y1", req, 1.0)          # still being relayed: neither new nor settled
    assert new == [] and known == []
    with pytest.raises(KeyIdInUse):                     # the same ID with another value
        ext.receive("Y1", ExtKeyRequest([ExtKey(req.keys[0].key_id, b"other")], "sae-y1", ["sae-b1"]), 1.0)
    with pytest.raises(KeyIdInUse):                     # another peer's ID
        ext.receive("Y2", req, 1.0)
    ext.failed([req.keys[0].key_id], "no key", 2.0)
    _, known = ext.receive("Y1", req, 3.0)
    assert [o.status for o in known] == ["failed"]
    assert not _on_disk(ks)


def test_a_peer_over_its_bound_of_waiting_work_is_refused_and_nothing_is_kept(stores):
    _, ext = stores
    first = _req(3)
    ext.receive("Y1", first, 1.0, max_pending=4)            # 3 held, not settled: the peer's share
    over = _req(2)
    with pytest.raises(TooMuchWaiting):
        ext.receive("Y1", over, 2.0, max_pending=4)
    assert ext.rx_request(over.keys[0].key_id) is None and ext.pending_callbacks("Y1") == 3
    ext.receive("Z1", _req(2), 3.0, max_pending=4)         # another peer's bound is its own
    ext.relayed([k.key_id for k in first.keys], [], 4.0)    # settled: acks queued (async) count instead
    assert ext.pending_callbacks("Y1") == 1


def test_keys_only_passed_on_or_sent_synchronously_never_have_their_material_stored(stores):
    ks, ext = stores
    passed = _req(1, callback=None)
    ext.receive("Y1", passed, 1.0, hold_material=False)
    ext.record_sent("Z1", [ExtKey(str(uuid.uuid4()), MATERIAL)], "sae-y1", ["sae-z1"], 9.0, 1.0, keep_material=False)
    assert not _on_disk(ks) and ext.rx_request(passed.keys[0].key_id) == ("Y1", "sae-y1", ["sae-b1"])
    (out,) = ext.relayed([passed.keys[0].key_id], [], 2.0)
    assert out.status == "relayed"


def test_void_voids_received_keys_and_leaves_no_bytes(stores):
    ks, ext = stores
    req = _req(2)
    ext.receive("Y1", req, 1.0)
    ids = [k.key_id for k in req.keys]
    ext.relayed(ids[:1], [StoredKey(ids[0], "sae-y1", ["sae-b1"], MATERIAL)], 2.0)
    out = ext.void_received("Y1", [], "sae-y1", ["sae-b1"])   # all between the SAEs
    assert sorted(o.key_id for o in out) == sorted(ids) and {o.status for o in out} == {"voided"}
    assert ks.peek(ids[0]) is None and not _on_disk(ks)
    assert ext.void_received("Y2", ids, "sae-y1", ["sae-b1"])[0].status == "key not present"   # not Y2's


def test_sent_keys_keep_material_until_settled(stores):
    ks, ext = stores
    keys = [ExtKey(str(uuid.uuid4()), MATERIAL)]
    ext.record_sent("Y1", keys, "sae-b1", ["sae-y2"], due=10.0, now=1.0)
    assert ext.sent_due(5.0) == [] and len(ext.sent_due(10.0)) == 1
    from kms_agents.etsi020.model import Outcome
    with pytest.raises(KeyError):                       # Y2 cannot settle what we sent to Y1
        ext.apply_acks("Y2", [Outcome(keys[0].key_id, "relayed", "sae-b1", ("sae-y2",))])
    [(before, state)] = ext.apply_acks("Y1", [Outcome(keys[0].key_id, "relayed", "sae-b1", ("sae-y2",))])
    assert before.material == MATERIAL and state == rules.TX_RELAYED
    assert ext.sent([keys[0].key_id])[0].material is None and not _on_disk(ks)


def test_the_etsi020_table_is_checked_and_names_the_entry(tmp_path):
    for name in ("ca", "cert", "key"):
        (tmp_path / name).write_text("x")
    base = {"node_id": "B", "state_dir": str(tmp_path / "s"),
            "tls": {"ca_cert": str(tmp_path / "ca"), "cert": str(tmp_path / "cert"), "key": str(tmp_path / "key")}}
    cfg = parse_config({**base, "etsi020": {"peers": [{"kme_id": "Y1", "url": "https://y1:443",
                                                       "identity": "urn:qusec:node:Y1"}]}})
    assert cfg.etsi020.peers[0].kme_id == "Y1" and cfg.etsi020.sync_mode is True
    with pytest.raises(ConfigError) as e:
        parse_config({**base, "etsi020": {"listn": "x", "request_s": 0, "ca_certs": ["/nope"],
                                          "peers": [{"kme_id": "Y1", "url": "http://y1", "identity": "Y1"},
                                                    {"kme_id": "Y1", "url": "https://y", "identity": "cn:y",
                                                     "colour": 1}]}})
    text = "\n".join(e.value.problems)
    for expected in ("[etsi020]: unknown field 'listn'", "request_s: must be positive", "file not found: /nope",
                     "peers[0] (Y1): url: an https:// URL", "peers[0] (Y1): identity: expected",
                     "peers[1] (Y1): unknown field 'colour'", "kme_id 'Y1' appears twice"):
        assert expected in text, (expected, text)


def test_the_etsi020_table_survives_writing_and_reading(tmp_path):
    from kms_agents.config import load_config, write_config
    for name in ("ca", "cert", "key"):
        (tmp_path / name).write_text("x")
    cfg = parse_config({"node_id": "B", "state_dir": str(tmp_path / "s"),
                        "tls": {"ca_cert": str(tmp_path / "ca"), "cert": str(tmp_path / "cert"),
                                "key": str(tmp_path / "key")},
                        "etsi020": {"ca_certs": [str(tmp_path / "ca")], "sync_mode": False,
                                    "peers": [{"kme_id": "Y1", "url": "https://y1:443", "identity": "dns:y1"}]}})
    again = load_config(write_config(cfg, tmp_path / "agent.toml"))
    assert again.etsi020 == cfg.etsi020
