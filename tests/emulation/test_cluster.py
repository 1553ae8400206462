"""``qkdnet up TOPOLOGY --cluster SERVER,SERVER``: one QKD network over two Mininet servers.

The second server is a network namespace with its own sshd and its own Open vSwitch
(``tests.helpers.cluster_server``): Mininet reaches it over ssh at its own address, its switches
live in its OVS, its hosts' namespaces are made by its shell, and links to it are tunnels over the
veth between the two. linear6 goes half on each (A B C there, D E F here, QuSeC here); every host
pings every other; a key relayed from sae-a (on the second server) to sae-f (here) crosses the
tunnel; the second server does not share the state directory and gets only the files of what it
runs; stopping leaves nothing on either server; a SIGKILLed cluster run is cleaned on both by
``qkdnet clean``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.cluster_server import NamespaceServer, tools_missing
from tests.helpers.emu_guard import check_clean

from mininet_topos import topology
from mininet_topos.launch.clean import leftover_pids, our_bridges, our_veths
from mininet_topos.launch.lock import _inherited_lock_fd, mininet_lock

pytestmark = pytest.mark.emulation

QKDNET = str(Path(sys.executable).with_name("qkdnet"))
REMOTE_NODES = {"A", "B", "C"}


@pytest.fixture
def lock_fd(emulation_host, tmp_path_factory):
    """The Mininet lock for the whole test (handed to the qkdnet processes it starts); before it
    is released, the leftover finaliser checks this machine."""
    missing = tools_missing()
    if missing:
        pytest.fail(f"cluster test needs {', '.join(missing)} (Makefile APT_DEPS: openssh-server, sudo)")
    with mininet_lock():
        fd = _inherited_lock_fd()
        assert fd is not None
        yield fd
        check_clean(tmp_path_factory.getbasetemp())


@pytest.fixture
def server2(lock_fd, tmp_path):
    # The state directories the tests use are the second server's own disk there (not shared).
    srv = NamespaceServer(tmp_path / "server2", private=[tmp_path / d for d in ("state", "crash", "bad")])
    with srv:
        yield srv
    assert not srv.leftovers(), srv.leftovers()


def local_ovs_bridges() -> set[str]:
    return set(our_bridges())


def test_linear6_over_two_servers(server2, tmp_path, emulation_host):
    from mininet_topos.launch.cluster import ClusterNetwork
    state = tmp_path / "state"
    net = ClusterNetwork(topology.load("linear6"), state, servers=f"localhost,{server2.address}",
                         ssh_config=str(server2.ssh_config), datapath="user")
    assert {n for n, i in net.placement.items() if i == 1} == REMOTE_NODES
    try:
        net.start()
        # Really on two servers: each OVS holds its own three switches.
        assert set(server2.ssh("ovs-vsctl list-br").stdout.split()) == {"qs1", "qs2", "qs3"}
        assert local_ovs_bridges() == {"qs4", "qs5", "qs6"}
        vxlan = server2.ssh("ip -d -o link show type vxlan").stdout
        # Two tunnels: the switch link C-D, and server 2's management bridge to qmgmt0.
        assert vxlan.count("vxlan id") == 2 and vxlan.count("remote 10.213.0.1") == 2, vxlan
        assert {"qs3-eth4", "qmgmt1-eth1"} <= {l.split(":")[1].strip() for l in vxlan.splitlines()}
        ports = server2.ssh("ip -o link show master qmgmt1").stdout
        assert ports.count("qmgmt1-eth") == 4, ports      # A, B, C's management links and the tunnel
        # The remote hosts' shells run on server 2 (their ssh sessions), in namespaces its sshd made.
        assert all(net.net.get(h).isRemote for h in ("A", "B", "C", "sae-a", "qs1"))
        assert not net.net.get("F").isRemote
        doc = json.loads((state / "network.json").read_text())
        assert doc["mode"] == "mininet" and set(doc["nodes"]) == set("ABCDEF")
        assert (state / "cluster.json").exists()
        # Server 2 does not share the state directory: it got only what its nodes and SAEs need.
        assert server2.ssh(f"ls {state}/pki/nodes").stdout.split() == ["A.key", "A.pem", "B.key", "B.pem",
                                                                     "C.key", "C.pem"]
        assert server2.ssh(f"ls {state}/pki/saes").stdout.split() == ["sae-a.key", "sae-a.pem",
                                                                     "sae-c.key", "sae-c.pem"]
        assert server2.ssh(f"test -e {state}/qusec || test -e {state}/pki/ca.key", check=False).returncode
        assert not (state / "nodes" / "A" / "keys.db").exists()      # A's key store is on server 2
        assert net.net.pingAll(timeout=2) == 0.0
        # A relayed key from sae-a (server 2) to sae-f (here): over the tunnel, twice.
        pair = net.key_pair("sae-a", "sae-f", number=2, fresh=True)
        assert pair["ok"] and pair["keys_matched"] == 2, pair
        assert pair["path"] == ["A", "B", "C", "D", "E", "F"]
        assert any("priority=30000" in f for f in net.dump_flows("B")), "relay flows on a remote switch"
    finally:
        net.stop()
    assert server2.network_left() == {}
    assert not leftover_pids(state)
    assert not our_bridges() and not our_veths()
    assert not (state / "cluster.json").exists()
    assert server2.ssh("ovs-vsctl get-ssl").stdout.strip() == ""


def test_qkdnet_clean_knows_a_crashed_cluster_run(server2, tmp_path, lock_fd):
    state = tmp_path / "crash"
    proc = subprocess.Popen([QKDNET, "up", "linear6", "--state-dir", str(state), "--no-cli",
                             "--cluster", f"localhost,{server2.address}", "--ssh-config", str(server2.ssh_config)],
                            pass_fds=(lock_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (state / "network.json").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no network.json after 180 s"
            time.sleep(0.3)
        assert set(server2.ssh("ovs-vsctl list-br").stdout.split()) == {"qs1", "qs2", "qs3"}
    finally:
        proc.kill()                       # a crash: nothing of the launcher's stop runs
        out, _ = proc.communicate()
    assert "3 nodes: C B A" in out or "3 nodes: A B C" in out, out
    assert server2.network_left(), "the crashed run left nothing on server 2 to clean"
    clean = subprocess.run([QKDNET, "clean"], pass_fds=(lock_fd,), capture_output=True, text=True,
                           timeout=180)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"server {server2.address}: " in clean.stdout, clean.stdout
    assert server2.network_left() == {}, clean.stdout
    assert not leftover_pids(state) and not our_bridges() and not our_veths(), clean.stdout
    assert not (state / "cluster.json").exists()


def test_a_server_that_cannot_be_used_is_refused_before_anything_starts(server2, tmp_path, lock_fd):
    """A server whose ssh refuses us: exit 1 naming the server and the command, nothing started."""
    bad = tmp_path / "bad_ssh_config"
    bad.write_text(Path(server2.ssh_config).read_text().replace("client_key", "no_such_key"))
    out = subprocess.run([QKDNET, "up", "linear6", "--state-dir", str(tmp_path / "bad"), "--no-cli",
                          "--cluster", f"localhost,{server2.address}", "--ssh-config", str(bad)],
                         pass_fds=(lock_fd,), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"server {server2.address}: `ssh -F {bad}" in out.stderr, out.stderr
    assert not (tmp_path / "bad" / "pki").exists()
    assert not our_bridges() and server2.network_left() == {}
