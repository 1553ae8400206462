"""The small parametrised topologies work with Mininet's own ``mn --custom``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mininet_topos.emulation import mininet_lock

pytestmark = pytest.mark.emulation


def test_mininet_custom_topologies_run_with_mn(emulation_host):
    """``mn --custom mininet_topos/qkdtopos.py --topo qkdlinear,3`` builds and pings (no controller)."""
    mn = Path(sys.executable).with_name("mn")
    custom = Path(__file__).resolve().parents[2] / "mininet_topos" / "qkdtopos.py"
    with mininet_lock():
        proc = subprocess.run([str(mn), "--custom", str(custom), "--topo", "qkdlinear,3",
                               "--controller", "none", "--switch",
                               f"ovs,datapath={emulation_host},failMode=standalone,protocols=OpenFlow13",
                               "--test", "pingall"], capture_output=True, text=True, timeout=120)
    assert "Results: 0% dropped (20/20 received)" in proc.stdout + proc.stderr, proc.stderr[-2000:]
