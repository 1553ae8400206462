"""Shared fixtures and the tier gates.

Tiers: tests/unit (pure, no sockets), tests/integration (real processes on
loopback), tests/emulation (Mininet + OVS, root). Outside CI the emulation tier
skips with a clear reason when root or Open vSwitch is missing; under CI=true a
missing prerequisite is a failure, so the tier can never be skipped silently there.
"""
from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def emulation_unavailable() -> str | None:
    """Why the Mininet tier cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (Mininet creates namespaces and veth pairs)"
    for tool in ("mnexec", "ovs-vsctl"):
        if not shutil.which(tool):
            return f"{tool} not found (apt-get install mininet openvswitch-switch, or run make test)"
    from mininet_topos.launch import ovs
    try:
        ovs.ensure_running()
    except ovs.OvsError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def emulation_host() -> str:
    """Gate for the Mininet tier; returns the OVS datapath to use ('kernel' or 'user')."""
    reason = emulation_unavailable()
    if reason:
        if IN_CI:
            pytest.fail(f"emulation tier cannot run in CI: {reason}")
        pytest.skip(reason)
    from mininet_topos.launch import ovs
    return ovs.datapath()
