"""004-style key stream between SAEs two hops apart, with QuSeC and the key relay (real processes)."""
from __future__ import annotations

import json

import pytest

from kms_agents.proto import etsi004_pb2 as pb
from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, small_topology

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    # B-C at 64 kbit/s: 4 KB of link key per second per direction; the second test drains it
    with LocalNetwork(small_topology(slow_bps=65536), tmp_path_factory.mktemp("s004"), with_qusec=True) as n:
        if n.controller is None:
            pytest.skip("QuSeC could not start here (see its log under the state dir)")
        yield n


def test_stream_across_a_trusted_node(net) -> None:
    saes = Saes(json.loads(net.network_json.read_text()))
    a, c = saes.app("sae-a1"), saes.app("sae-c1")
    r = a.open_connect("qkd://sae-a1", "qkd://sae-c1", key_chunk_size=32)
    assert r.status == pb.Status.PEER_NOT_CONNECTED
    j = c.open_connect("qkd://sae-a1", "qkd://sae-c1", key_stream_id=r.key_stream_id, key_chunk_size=32,
                       timeout_ms=2000)
    assert j.status == pb.Status.SUCCESSFUL
    for i in range(3):
        first, second = (a, c) if i % 2 else (c, a)    # either end may ask first
        x, y = first.get_key(r.key_stream_id, i), second.get_key(r.key_stream_id, i)
        assert x.status == y.status == pb.Status.SUCCESSFUL, (x.status, y.status)
        assert x.key_buffer == y.key_buffer and len(x.key_buffer) == 32
        at_c = x if first is c else y
        assert json.loads(at_c.metadata.buffer)["hops"] == 1      # relayed through B
    assert a.close_stream(r.key_stream_id).status == pb.Status.SUCCESSFUL
    assert c.get_key(r.key_stream_id, 9).status == pb.Status.PEER_APPLICATION_NOT_CONNECTED
    a.close(), c.close()
    saes.close()


def test_relayed_stream_out_of_link_key_says_insufficient_key(net) -> None:
    # runs after the test above: drains B-C
    saes = Saes(json.loads(net.network_json.read_text()))
    a, c = saes.app("sae-a1"), saes.app("sae-c1")
    # 1 KiB chunks: 1056 B of B-C key per chunk, relayed far faster than B-C makes it
    r = a.open_connect("qkd://sae-a1", "qkd://sae-c1", key_chunk_size=1024, timeout_ms=0)
    c.open_connect("qkd://sae-a1", "qkd://sae-c1", key_stream_id=r.key_stream_id, key_chunk_size=1024)
    statuses = []
    while pb.Status.INSUFFICIENT_KEY not in statuses and len(statuses) < 300:
        statuses.append(a.get_key(r.key_stream_id, len(statuses)).status)
    assert pb.Status.SUCCESSFUL in statuses
    assert pb.Status.NO_QKD_CONNECTION not in statuses, statuses    # the route is there
    assert statuses[-1] == pb.Status.INSUFFICIENT_KEY
    a.close(), c.close()
    saes.close()
