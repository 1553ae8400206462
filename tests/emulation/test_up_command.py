"""``qkdnet up`` as a user runs it: up, a key from inside an SAE host, SIGTERM, nothing left; and
``qkdnet clean`` after a crashed (SIGKILLed) run."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emu_guard import no_leftovers  # noqa: F401 - fixture

from mininet_topos.cleancmd import leftover_pids, our_bridges
from mininet_topos.topos import MGMT_BRIDGE

pytestmark = [pytest.mark.emulation, pytest.mark.usefixtures("no_leftovers")]

QKDNET = str(Path(sys.executable).with_name("qkdnet"))


def start_up(state: Path) -> subprocess.Popen:
    # stdin is not a terminal: `qkdnet up` stays up without the CLI until SIGTERM.
    return subprocess.Popen([QKDNET, "up", "linear6", "--state-dir", str(state)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_network(proc: subprocess.Popen, state: Path, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"qkdnet up exited {proc.returncode}:\n{proc.stdout.read()}")
        try:
            doc = json.loads((state / "network.json").read_text())
            if doc.get("mode") == "mininet":
                return doc
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"no network.json after {timeout} s:\n{proc.stdout.read()}")


def nothing_left(state: Path) -> None:
    assert not leftover_pids(state)
    assert not our_bridges()
    assert subprocess.run(["ip", "link", "show", MGMT_BRIDGE], capture_output=True).returncode != 0


def test_up_serves_keys_and_stops_cleanly_on_sigterm(emulation_host, tmp_path):
    state = tmp_path / "up"
    proc = start_up(state)
    try:
        doc = wait_network(proc, state)
        assert set(doc["nodes"]) == {"A", "B", "C", "D", "E", "F"}
        sae = doc["mininet"]["saes"]["sae-a"]
        # Inside SAE host sae-a: qkdnet key gets keys from A's and F's vKMS over the data plane.
        out = subprocess.run(["mnexec", "-a", str(sae["pid"]), QKDNET, "key", "--network",
                              str(state / "network.json"), "sae-a", "sae-f", "-n", "2", "--json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["ok"] and len(result["keys"]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert proc.returncode == 0, output
    assert "stopped: agents, Mininet network and QuSeC" in output
    nothing_left(state)


def test_clean_removes_what_a_crashed_run_left(emulation_host, tmp_path):
    state = tmp_path / "crash"
    proc = start_up(state)
    try:
        wait_network(proc, state)
    finally:
        proc.kill()                       # no finally blocks, no net.stop(): a crash
        proc.communicate()
    assert leftover_pids(state) and our_bridges()
    out = subprocess.run([QKDNET, "clean", "--state-dir", str(state)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "leftover process" in out.stdout, out.stdout
    nothing_left(state)


def test_up_takes_over_a_crashed_runs_state_dir(emulation_host, tmp_path):
    state = tmp_path / "again"
    first = start_up(state)
    try:
        wait_network(first, state)
    finally:
        first.kill()
        first.communicate()
    stale = set(leftover_pids(state))
    assert stale
    (state / "network.json").unlink()
    second = start_up(state)
    try:
        wait_network(second, state)
        assert not stale & set(leftover_pids(state))      # the crashed run's processes are gone
    finally:
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0 and "crashed run left" in output, output
    nothing_left(state)


def test_demo_json_contract(emulation_host, tmp_path):
    """``qkdnet demo --json``: one JSON object with DESIGN.md's fields, exit 0 with every check held."""
    out = subprocess.run([QKDNET, "demo", "--json", "--keys", "2", "--state-dir", str(tmp_path / "demo")],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["ok"] is True, out.stdout[-3000:] + out.stderr[-2000:]
    assert doc["topology"] == "metro8" and doc["flows_installed"] > 0
    (pair,) = doc["pairs"]
    assert {"src_sae", "dst_sae", "path", "keys_requested", "keys_matched"} <= set(pair)
    assert pair["keys_requested"] == pair["keys_matched"] == 2 and len(pair["path"]) - 1 >= 3
    assert doc["reroute"]["keys_matched"] == 1 and doc["reroute"]["reroute_s"] < 5
    assert all(c["ok"] for c in doc["checks"]) and len(doc["checks"]) >= 5
    assert not our_bridges()
