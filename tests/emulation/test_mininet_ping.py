"""Proof that the Mininet tier really runs: two OVS switches, two hosts, ping across."""
from __future__ import annotations

import fcntl
import time

import pytest

pytestmark = pytest.mark.emulation

LOCK_PATH = "/tmp/qusec-mininet.lock"


@pytest.fixture(scope="module")
def mininet_lock():
    """Mininet and OVS are shared by every test run on the machine: one network at a time."""
    with open(LOCK_PATH, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def test_two_switches_ping_on_userspace_datapath(emulation_host, mininet_lock):
    from mininet.clean import cleanup
    from mininet.net import Mininet
    from mininet.node import OVSSwitch
    from mininet.topo import Topo

    class TwoSwitches(Topo):
        def build(self):
            s1, s2 = self.addSwitch("s1"), self.addSwitch("s2")
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
        assert loss == 0.0, f"ping h1 <-> h2 across s1-s2 lost {loss}% on the {datapath} datapath"
        out = h1.cmd("ping -c 3 -i 0.2 -W 1", h2.IP())
        assert " 0% packet loss" in out, out
        ok = True
    finally:
        net.stop()
        if not ok:
            cleanup()
