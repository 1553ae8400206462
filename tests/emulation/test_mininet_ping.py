"""Proof that the Mininet tier really runs: two OVS switches, two hosts, ping and TCP across."""
from __future__ import annotations

import sys
import time

import pytest


from mininet_topos.launch import lock
from mininet_topos.launch.topos import tx_checksum_off

pytestmark = [pytest.mark.emulation, pytest.mark.usefixtures("no_leftovers")]

BULK_BYTES = 1 << 20
SERVE_BULK = f"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7070)); s.listen(1)
c, _ = s.accept(); c.sendall(bytes({BULK_BYTES})); c.close()
"""
FETCH_BULK = """
import socket, sys, time
deadline = time.time() + 20
while True:
    try:
        c = socket.create_connection((sys.argv[1], 7070), timeout=5); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.2)
n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
print(n)
"""


@pytest.fixture(scope="module")
def mininet_lock():
    """Mininet and OVS are shared by every test run on the machine: one network at a time."""
    with lock.mininet_lock():
        yield


def test_two_switches_ping_on_userspace_datapath(emulation_host, mininet_lock):
    from mininet.net import Mininet
    from mininet.node import OVSSwitch
    from mininet.topo import Topo

    class TwoSwitches(Topo):
        def build(self):
            # qsN: the prefix `qkdnet clean` (cleanup_ours) removes after a failure.
            s1, s2 = self.addSwitch("qs1"), self.addSwitch("qs2")
            h1, h2 = self.addHost("h1"), self.addHost("h2")
            self.addLink(h1, s1)
            self.addLink(s1, s2)
            self.addLink(s2, h2)

    datapath = emulation_host
    # No controller: standalone fail mode makes each OVS bridge a learning switch, so
    # this test proves Mininet + OVS on this datapath independently of QuSeC.
    net = Mininet(topo=TwoSwitches(), controller=None, autoSetMacs=True,
                  switch=lambda name, **kw: OVSSwitch(name, datapath=datapath,
                                                      failMode="standalone",
                                                      protocols="OpenFlow13", **kw))
    ok = False
    try:
        net.start()
        for sw in net.switches:
            dp_type = sw.cmd("ovs-vsctl get bridge", sw.name, "datapath_type").strip().strip('"')
            expected = {"netdev"} if datapath == "user" else {"", "system"}
            assert dp_type in expected, (sw.name, dp_type)
        h1, h2 = net.get("h1", "h2")
        # The userspace datapath can need a few seconds per switch before it forwards.
        deadline = time.monotonic() + 30
        loss = 100.0
        while time.monotonic() < deadline:
            loss = net.ping([h1, h2], timeout="1")
            if loss == 0.0:
                break
            time.sleep(0.5)
        assert loss == 0.0, f"ping h1 <-> h2 across qs1-qs2 lost {loss}% on the {datapath} datapath"
        out = h1.cmd("ping -c 3 -i 0.2 -W 1", h2.IP())
        assert " 0% packet loss" in out, out
        # TCP with a bulk transfer (the userspace datapath needs TX checksum offload off).
        if datapath == "user":
            tx_checksum_off((h1, h2))  # raises naming the host if the ioctl fails
        server = h2.popen([sys.executable, "-S", "-c", SERVE_BULK, h2.IP()])
        try:
            got = h1.popen([sys.executable, "-S", "-c", FETCH_BULK, h2.IP()]).communicate(timeout=30)[0]
        finally:
            server.kill()
            server.wait()
        assert got.decode().strip() == str(BULK_BYTES), got
        ok = True
    finally:
        net.stop()
        if not ok:
            from mininet_topos.launch.clean import cleanup_ours
            cleanup_ours({"h1", "h2", "qs1", "qs2"})


def test_leftover_guard_finds_and_removes_what_a_failed_test_left(emulation_host, tmp_path):
    """The fixture finaliser (emu_guard) sees a bridge, a veth and an agent left behind, removes
    them with qkdnet clean's scoped cleanup, and nothing unrelated."""
    import subprocess
    from tests.helpers.emu_guard import leftovers, sweep
    base = tmp_path.parent
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "kms_agents.agent"])
    with lock.mininet_lock():
        subprocess.run(["ovs-vsctl", "add-br", "qs9999", "--", "set", "bridge", "qs9999",
                        "datapath_type=netdev"], check=True)
        subprocess.run(["ip", "link", "add", "qs9999-eth1", "type", "veth", "peer", "name", "qgtest-p"],
                       check=True)
        (tmp_path / "n").mkdir()
        agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "kms_agents.agent",
                                  "--config", str(tmp_path / "n" / "agent.toml")])
        try:
            left = sweep(base)
            assert "qs9999" in left["OVS bridges"]
            assert "qs9999-eth1" in left["veths"]
            assert any(p.startswith(f"{agent.pid} ") for p in left["processes"])
            assert leftovers(base) == {}
            assert agent.wait(5) is not None
            assert unrelated.poll() is None               # not ours: untouched
        finally:
            for p in (agent, unrelated):
                p.kill()
                p.wait()
            subprocess.run(["ovs-vsctl", "--if-exists", "del-br", "qs9999"], check=False)
            subprocess.run(["ip", "link", "del", "qs9999-eth1"], capture_output=True, check=False)
