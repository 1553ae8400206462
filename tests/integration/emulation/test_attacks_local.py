"""The trust issue's attacks end to end, on `qkdnet up linear6 --local` as a user runs it: each
fails with a refusal the operator can read, and honest use of the same network is unchanged.
(Each one in depth: tests/integration/controller/test_attacks.py, tests/integration/agents/.)"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from kms_agents.client import Etsi014Client, PeerIdentityError
from mininet_topos.launch.keypair import client_pair
from mininet_topos.launch.operator import OperatorClient
from quseccontroller.proto import control_pb2, control_pb2_grpc
from tests.helpers.agent_standin import TestAgent, link

pytestmark = [pytest.mark.integration, pytest.mark.slow]
QKDNET = [sys.executable, "-m", "mininet_topos.cli"]


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    state = tmp_path_factory.mktemp("attacks") / "net"
    proc = subprocess.Popen([*QKDNET, "up", "linear6", "--local", "--no-cli", "--state-dir", str(state)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 90
    while not (state / "network.json").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "network not up"
        time.sleep(0.2)
    try:
        yield json.loads((state / "network.json").read_text()), state
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def honest(doc: dict) -> None:
    r = client_pair(doc, "sae-a", "sae-f", 2)
    assert r["ok"] and r["path"] == ["A", "B", "C", "D", "E", "F"], r


def pki(state: Path, kind: str, name: str) -> tuple[str, str]:
    return str(state / "pki" / kind / f"{name}.pem"), str(state / "pki" / kind / f"{name}.key")


def metrics(doc: dict) -> str:
    with urllib.request.urlopen(doc["qusec"]["http"] + "/metrics", timeout=5) as r:
        return r.read().decode()


def test_sae_certificate_cannot_register_as_node(network):
    doc, state = network
    cert, key = pki(state, "saes", "sae-c")
    fake = TestAgent(doc["qusec"]["grpc"], doc["ca_cert"], cert, key, "sae-c", saes=["sae-f"],
                     links=[link("sae-c-D", "D", 10**12)])
    fake.register.trust_level = 5
    try:
        assert fake.connect().wait_closed().code() == grpc.StatusCode.PERMISSION_DENIED
        assert not fake.registered.is_set()
    finally:
        fake.close()
    assert re.search(r'qusec_registrations_refused_total\{reason="role"\} [1-9]', metrics(doc))
    honest(doc)                      # sae-f is still F's, and keys for it still reach F


def test_node_cannot_raise_its_trust_or_take_another_nodes_sae(network):
    doc, state = network
    cert, key = pki(state, "nodes", "C")
    for change in ("trust", "sae"):
        fake = TestAgent(doc["qusec"]["grpc"], doc["ca_cert"], cert, key, "C", saes=["sae-c"])
        if change == "trust":
            fake.register.trust_level = 5
        else:
            fake.register.saes.append("sae-f")
        try:
            err = fake.connect().wait_closed()
            assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED, change
        finally:
            fake.close()
    honest(doc)


def test_other_node_cannot_release_a_path_and_status_needs_an_operator(network):
    doc, state = network
    honest(doc)                      # a path A..F exists now
    op = OperatorClient.of_network(doc)
    paths = op.status()["core"]["paths"]
    assert paths
    with pytest.raises(urllib.error.HTTPError) as err:            # /status is not on the plain port
        urllib.request.urlopen(doc["qusec"]["http"] + "/status", timeout=5)
    assert err.value.code == 404
    with pytest.raises(OSError):                                  # nor for a node's certificate
        OperatorClient(doc["qusec"]["https"], doc["ca_cert"], *pki(state, "nodes", "B")).status()
    assert not any(pid in metrics(doc) for pid in paths)           # /metrics names no path
    cert, key = pki(state, "nodes", "B")
    creds = grpc.ssl_channel_credentials(Path(doc["ca_cert"]).read_bytes(), Path(key).read_bytes(),
                                         Path(cert).read_bytes())
    with grpc.secure_channel(doc["qusec"]["grpc"], creds,
                             options=[("grpc.ssl_target_name_override", "qusec")]) as ch:
        stub = control_pb2_grpc.QuSeCControlStub(ch)
        for pid in paths:
            with pytest.raises(grpc.RpcError) as err:
                stub.ReleasePath(control_pb2.ReleaseRequest(path_id=pid), timeout=5)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert set(paths) <= set(op.status()["core"]["paths"])         # nothing was released
    honest(doc)


def test_a_node_certificate_cannot_pass_for_another_node_on_loopback(network):
    doc, state = network
    sae = doc["saes"]["sae-a"]
    # B's vKMS answers at an address A's certificate also names (127.0.0.1): an address check
    # would pass; the SAE's client checks the identity it meant to reach.
    with Etsi014Client(doc["nodes"]["B"]["etsi014_url"], doc["ca_cert"], sae["cert"], sae["key"],
                       kme_node="A") as c:
        with pytest.raises(PeerIdentityError, match="node:B, not of node:A"):
            c.status("sae-f")


def test_delivered_keys_leave_no_byte_in_the_key_store(network):
    doc, state = network
    r = client_pair(doc, "sae-a", "sae-f", 3, materials=True)
    assert r["ok"]
    store = state / "F"
    files = sorted(p for p in store.iterdir() if p.name.startswith("keys.db"))
    assert files
    for p in files:
        data = p.read_bytes()
        assert not any(k["master_key"] in data for k in r["keys"]), p
        assert p.stat().st_mode & 0o777 == 0o600, p
    assert store.stat().st_mode & 0o777 == 0o700
