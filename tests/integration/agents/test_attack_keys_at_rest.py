"""Keys at rest on real agents: a key waits on disk until delivered (durable), and once delivered
(or its stream closed) its bytes are in no file of the key store; those files are the agent's alone."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, small_topology

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with LocalNetwork(small_topology(), tmp_path_factory.mktemp("rest"), with_qusec=False) as n:
        n.saes = Saes(json.loads(n.network_json.read_text()))
        yield n
        n.saes.close()


def store_bytes(net, node: str) -> bytes:
    """Every byte of every file of a node's key store (keys.db and its -wal, -shm)."""
    return b"".join(p.read_bytes() for p in sorted(Path(net.fleet.state(node)).glob("keys.db*")))


def test_delivered_key_bytes_are_gone_from_the_key_store_files(net) -> None:
    keys = net.saes.kme("sae-a1").enc_keys("sae-b1", number=4)              # direct link: stored at B
    local = net.saes.kme("sae-a1").enc_keys("sae-a2", number=2)             # same node: stored at A
    assert all(k.key in store_bytes(net, "B") for k in keys)                # acknowledged: on disk
    assert all(k.key in store_bytes(net, "A") for k in local)
    net.saes.kme("sae-b1").dec_keys("sae-a1", [k.key_id for k in keys])
    net.saes.kme("sae-a2").dec_keys("sae-a1", [k.key_id for k in local])
    assert not any(k.key in store_bytes(net, "B") for k in keys)           # database and WAL alike
    assert not any(k.key in store_bytes(net, "A") for k in local)


def test_closed_key_stream_chunks_are_gone_from_the_key_store_files(net) -> None:
    a, b = net.saes.app("sae-a2"), net.saes.app("sae-b2")
    first = a.open_connect("qkd://sae-a2", "qkd://sae-b2", timeout_ms=0)
    b.open_connect("qkd://sae-a2", "qkd://sae-b2", key_stream_id=first.key_stream_id)
    got = a.get_key(first.key_stream_id, 0)             # chunk 0 now waits at B for sae-b2
    assert got.key_buffer in store_bytes(net, "B")
    assert b.close_stream(first.key_stream_id).status == 0    # B's application never fetched it
    assert got.key_buffer not in store_bytes(net, "B")
    a.close_stream(first.key_stream_id)
    a.close(), b.close()


def test_key_store_is_readable_by_the_agent_only(net) -> None:
    for node in ("A", "B", "C"):
        state = Path(net.fleet.state(node))
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        files = list(state.glob("keys.db*"))
        assert {f.name for f in files} >= {"keys.db", "keys.db-wal"}
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), [oct(f.stat().st_mode) for f in files]
