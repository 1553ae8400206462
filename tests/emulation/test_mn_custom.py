"""The small parametrised topologies work with Mininet's own ``mn --custom``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


from mininet_topos.launch.lock import mininet_lock

pytestmark = [pytest.mark.emulation, pytest.mark.usefixtures("no_leftovers")]


def test_mininet_custom_topologies_run_with_mn(emulation_host):
    """``qkdnet mn --topo qkdlinear,3`` (this environment's ``mn`` with ``--custom
    mininet_topos/qkdtopos.py``, as the docs write it) builds and pings (no controller)."""
    qkdnet = Path(sys.executable).with_name("qkdnet")
    with mininet_lock():
        proc = subprocess.run([str(qkdnet), "mn", "--topo", "qkdlinear,3",
                               "--controller", "none", "--switch",
                               f"ovs,datapath={emulation_host},failMode=standalone,protocols=OpenFlow13",
                               "--test", "pingall"], capture_output=True, text=True, timeout=120)
    assert "Results: 0% dropped (20/20 received)" in proc.stdout + proc.stderr, proc.stderr[-2000:]


def test_mn_ring_under_a_real_qusec_controller(emulation_host, tmp_path):
    """``--topo qkdring,4 --controller qusec,port=P``: QuSeC's loop-free forwarding on a ring."""
    from mininet_topos.provision.pki import build_pki
    from mininet_topos.qkdtopos import ring
    from mininet_topos.launch.controller import Controller
    pki = build_pki(ring(4), tmp_path / "pki")
    mn = Path(sys.executable).with_name("mn")
    custom = ROOT / "mininet_topos" / "qkdtopos.py"
    with mininet_lock():
        with Controller(tmp_path / "qusec", ca_cert=pki.ca_cert, cert=pki.qusec_cert,
                        key=pki.qusec_key) as ctl:
            proc = subprocess.run([str(mn), "--custom", str(custom), "--topo", "qkdring,4",
                                   "--controller", f"qusec,port={ctl.of_port}", "--switch",
                                   f"ovs,datapath={emulation_host},protocols=OpenFlow13",
                                   "--test", "qkdping"], capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert "qkdping: 0% dropped" in out, out[-3000:]
