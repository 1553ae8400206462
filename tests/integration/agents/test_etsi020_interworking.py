"""Two vKMSs of different networks (own CAs) in one interworking node, speaking GS QKD 020 to each other
with the project's own server and client: async and sync key passing, the ack settling the sender's
copy, delivery to the target SAE over ETSI 014, and a void."""
from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest

from kms_agents.agent import Agent
from kms_agents.client import Etsi014Client, Etsi014Error
from kms_agents.config import parse_config
from kms_agents.etsi020 import rules
from kms_agents.etsi020.model import ExtKey
from tests.helpers.pki import make_ca, make_cert, write

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agent(tmp: Path, node: str, ca: Path, cert, saes: dict, port: int, peer_ca: Path, peer: str,
           peer_port: int) -> Agent:
    cfg = parse_config({"node_id": node, "state_dir": str(tmp / node),
                        "tls": {"ca_cert": str(ca), "cert": str(cert[0]), "key": str(cert[1])}, "saes": saes,
                        "etsi020": {"listen": f"127.0.0.1:{port}", "ca_certs": [str(peer_ca)], "ack_timeout_s": 5.0,
                                    "peers": [{"kme_id": peer, "url": f"https://127.0.0.1:{peer_port}",
                                               "identity": f"urn:qusec:node:{peer}"}]}})
    agent = Agent(cfg)
    agent.start()
    return agent


@pytest.fixture
def pair(tmp_path: Path):
    x, y = make_ca("net-x"), make_ca("net-y")
    pki = tmp_path / "pki"
    x_ca, _ = write(*x, pki, "x-ca")
    y_ca, _ = write(*y, pki, "y-ca")
    pb, py = _free_port(), _free_port()
    b = _agent(tmp_path, "B", x_ca, write(*make_cert(x, "B"), pki, "B"), {"sae-b1": "B"}, pb, y_ca, "Y1", py)
    y1 = _agent(tmp_path, "Y1", y_ca, write(*make_cert(y, "Y1"), pki, "Y1"), {"sae-y1": "Y1"}, py, x_ca, "B", pb)
    sae_y1 = write(*make_cert(y, "sae-y1", role="sae"), pki, "sae-y1")
    yield b, y1, Etsi014Client(y1.endpoints["etsi014_url"], y_ca, *sae_y1, kme_node="Y1")
    b.stop()
    y1.stop()


def _wait_state(agent: Agent, key_ids, state: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if {k.state for k in agent.etsi020.ext_store.sent(key_ids)} == {state}:
            return
        time.sleep(0.05)
    raise AssertionError(f"keys not {state}: {agent.etsi020.ext_store.sent(key_ids)}")


def test_keys_cross_the_interworking_node_async_and_reach_the_target_sae(pair):
    b, y1, sae = pair
    keys = [ExtKey(str(uuid.uuid4()), bytes([i]) * 32) for i in range(3)]
    assert b.etsi020.send_keys("Y1", keys, "sae-b1", ["sae-y1"]) is None
    _wait_state(b, [k.key_id for k in keys], rules.TX_RELAYED)
    assert all(k.material is None for k in b.etsi020.ext_store.sent([k.key_id for k in keys]))
    got = sae.dec_keys("sae-b1", [k.key_id for k in keys])
    assert [g.key for g in got] == [k.material for k in keys]


def test_sync_mode_between_two_vkms(pair):
    b, _, sae = pair
    keys = [ExtKey(str(uuid.uuid4()), b"s" * 32)]
    outcomes = b.etsi020.send_keys("Y1", keys, "sae-b1", ["sae-y1"], sync=True)
    assert [o.status for o in outcomes] == ["relayed"]
    assert sae.dec_keys("sae-b1", [keys[0].key_id])[0].key == b"s" * 32


def test_a_void_from_the_sender_removes_the_key_before_any_sae_has_it(pair):
    b, y1, sae = pair
    keys = [ExtKey(str(uuid.uuid4()), b"v" * 32)]
    b.etsi020.send_keys("Y1", keys, "sae-b1", ["sae-y1"])
    _wait_state(b, [keys[0].key_id], rules.TX_RELAYED)
    fresh = [ExtKey(str(uuid.uuid4()), b"w" * 32)]
    b.etsi020.send_keys("Y1", fresh, "sae-b1", ["sae-y1"], sync=True)
    b.etsi020.void_sent("Y1", [fresh[0].key_id])            # relayed, not fetched yet: the peer voids it
    _wait_state(b, [fresh[0].key_id], rules.TX_VOIDED)     # settled by the peer's ack
    with pytest.raises(Etsi014Error):
        sae.dec_keys("sae-b1", [fresh[0].key_id])
    assert sae.dec_keys("sae-b1", [keys[0].key_id])[0].key == b"v" * 32


def test_a_void_after_the_sae_fetched_the_key_is_failed_to_void(pair):
    b, _, sae = pair
    keys = [ExtKey(str(uuid.uuid4()), b"f" * 32)]
    b.etsi020.send_keys("Y1", keys, "sae-b1", ["sae-y1"], sync=True)
    assert sae.dec_keys("sae-b1", [keys[0].key_id])[0].key == b"f" * 32
    b.etsi020.void_sent("Y1", [keys[0].key_id])
    _wait_state(b, [keys[0].key_id], rules.TX_FAILED_TO_VOID)
