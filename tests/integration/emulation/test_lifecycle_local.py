"""A loopback network's lifecycle as an operator lives it: a second launcher cannot disturb a
running one, a killed launcher's processes are found and stopped by ``qkdnet clean``, and a
signal during bring-up stops it at once."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mininet_topos.launch import rundir
from mininet_topos.launch.clean import leftover_pids

pytestmark = [pytest.mark.integration, pytest.mark.slow]
QKDNET = [sys.executable, "-m", "mininet_topos.cli"]


def start_up(state: Path, topology: str = "linear6") -> subprocess.Popen:
    return subprocess.Popen([*QKDNET, "up", topology, "--local", "--no-cli", "--state-dir", str(state)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def wait_up(proc: subprocess.Popen, state: Path, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while not (state / "network.json").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "network.json not written"
        time.sleep(0.2)
    return json.loads((state / "network.json").read_text())


def files(state: Path) -> dict[str, tuple[int, int]]:
    """Every file the launcher wrote (not what running processes keep writing: logs, key stores)."""
    return {str(p.relative_to(state)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in state.rglob("*") if p.is_file() and not p.name.endswith(".log")
            and not p.name.startswith("keys.db")}


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


def test_a_second_launcher_on_a_running_networks_state_dir_changes_nothing(tmp_path):
    state = tmp_path / "net"
    first = start_up(state)
    try:
        wait_up(first, state)
        before = files(state)
        second = subprocess.run([*QKDNET, "up", "linear6", "--local", "--no-cli", "--state-dir", str(state)],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"is in use by a running launcher (pid {first.pid})" in second.stderr, second.stderr
        assert files(state) == before          # not one certificate, config or socket rewritten
        key = subprocess.run([*QKDNET, "key", "--network", str(state / "network.json"), "sae-a", "sae-f"],
                             capture_output=True, text=True, timeout=60)
        assert key.returncode == 0 and "all keys match" in key.stdout, key.stdout + key.stderr
    finally:
        out = stop(first)
    assert first.returncode == 0, out


def test_clean_stops_what_a_killed_local_launcher_left_running(tmp_path):
    state = tmp_path / "somewhere" / "net"          # not a default /tmp/qkdnet-* state dir
    proc = start_up(state)
    try:
        wait_up(proc, state)
    finally:
        proc.kill()                                  # no finally blocks run: a crash
        proc.communicate()
    left = leftover_pids(state)
    assert len(left) >= 7, left                      # six agents, osken-manager (and its gateway)
    out = subprocess.run([*QKDNET, "clean", "--wait-lock", "120"], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert str(state.resolve()) in out.stdout and "leftover process" in out.stdout, out.stdout
    deadline = time.monotonic() + 10
    while leftover_pids(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftover_pids(state) == {}
    assert not any(r.state_dir == state.resolve() for r in rundir.runs())


def test_a_signal_during_local_bring_up_stops_it_at_once(tmp_path):
    state = tmp_path / "net"
    proc = start_up(state, "mesh:30")
    lines = []
    try:
        for line in proc.stdout:                     # the first agents are starting
            lines.append(line)
            if "ready:" in line:
                break
        assert not (state / "network.json").exists()
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - t
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, "".join(lines) + out
    assert "SIGTERM during bring-up; stopping what was started" in out and "stopped every process" in out
    assert took < 15, took
    assert leftover_pids(state) == {} and not (state / "network.json").exists()
