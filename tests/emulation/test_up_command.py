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

from tests.helpers.emu_guard import check_clean

from mininet_topos.launch.clean import leftover_pids, our_bridges
from mininet_topos.launch.lock import _inherited_lock_fd, mininet_lock
from mininet_topos.launch.plan import MGMT_BRIDGE

pytestmark = pytest.mark.emulation

QKDNET = str(Path(sys.executable).with_name("qkdnet"))


@pytest.fixture
def lock_fd(tmp_path_factory):
    """The test holds the Mininet lock from start to finish and hands its descriptor to every
    qkdnet it starts (which then uses it, see emulation.mininet_lock): no other run's network or
    finaliser can come between a SIGKILLed launcher and the clean-up this file tests. Before
    releasing it, the leftover finaliser checks (and removes) what the test left."""
    with mininet_lock():
        fd = _inherited_lock_fd()
        assert fd is not None
        yield fd
        check_clean(tmp_path_factory.getbasetemp())


def qkdnet(argv: list[str], lock: int, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([QKDNET, *argv], pass_fds=(lock,), capture_output=True, text=True, **kw)


def start_up(state: Path, lock: int, *extra: str) -> subprocess.Popen:
    # stdin is not a terminal: `qkdnet up` stays up without the CLI until SIGTERM.
    return subprocess.Popen([QKDNET, "up", "linear6", "--state-dir", str(state), *extra],
                            pass_fds=(lock,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
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


def test_up_serves_keys_and_stops_cleanly_on_sigterm(emulation_host, tmp_path, lock_fd):
    state = tmp_path / "up"
    policy = tmp_path / "lab-policy.toml"
    policy.write_text('[default]\naction = "allow"\n\n[[rules]]\nname = "no-c"\n'
                      'match = { dst_sae = "sae-c" }\naction = "deny"\n')
    proc = start_up(state, lock_fd, "--no-cli", "--policy", str(policy))
    try:
        doc = wait_network(proc, state)
        assert set(doc["nodes"]) == {"A", "B", "C", "D", "E", "F"}
        # --policy: QuSeC runs a copy of the file (state/policy.toml, so `qpolicy reload` edits stay local).
        assert Path(doc["policy"]).read_text() == policy.read_text()
        from mininet_topos.launch.operator import OperatorClient
        assert OperatorClient.of_network(doc).status()["core"]["policy"] == doc["policy"]
        sae = doc["mininet"]["saes"]["sae-a"]
        # Inside SAE host sae-a: qkdnet key gets keys from A's and F's vKMS over the data plane.
        out = subprocess.run(["mnexec", "-a", str(sae["pid"]), QKDNET, "key", "--network",
                              str(state / "network.json"), "sae-a", "sae-f", "-n", "2", "--json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["ok"] and len(result["keys"]) == 2
        # From the root shell (which has no route to the data plane) it runs each call inside its
        # SAE's host by itself.
        out = subprocess.run([QKDNET, "key", "--network", str(state / "network.json"), "sae-a", "sae-f",
                              "--json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["ok"] and result["keys_matched"] == 1 and result["path"][0] == "A"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert proc.returncode == 0, output
    assert "up; SIGTERM or Ctrl-C stops it" in output          # --no-cli: no Mininet CLI
    assert "stopped: agents, Mininet network and QuSeC" in output
    nothing_left(state)


def test_clean_removes_what_a_crashed_run_left(emulation_host, tmp_path, lock_fd):
    state = tmp_path / "crash"
    proc = start_up(state, lock_fd)
    try:
        wait_network(proc, state)
    finally:
        proc.kill()                       # no finally blocks, no net.stop(): a crash
        proc.communicate()
    assert leftover_pids(state) and our_bridges()
    out = qkdnet(["clean", "--state-dir", str(state)], lock_fd, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "leftover process" in out.stdout, out.stdout
    nothing_left(state)


def test_up_takes_over_a_crashed_runs_state_dir(emulation_host, tmp_path, lock_fd):
    state = tmp_path / "again"
    first = start_up(state, lock_fd)
    try:
        wait_network(first, state)
    finally:
        first.kill()
        first.communicate()
    stale = set(leftover_pids(state))
    assert stale
    (state / "network.json").unlink()
    second = start_up(state, lock_fd)
    try:
        wait_network(second, state)
        assert not stale & set(leftover_pids(state))      # the crashed run's processes are gone
    finally:
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0 and "crashed run left" in output, output
    nothing_left(state)


def test_demo_json_contract(emulation_host, tmp_path, lock_fd):
    """``qkdnet demo --json``: one JSON object with the documented fields, exit 0 with every check held."""
    out = qkdnet(["demo", "--json", "--keys", "2", "--state-dir", str(tmp_path / "demo")], lock_fd,
                 stdin=subprocess.DEVNULL, timeout=240)
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["ok"] is True, out.stdout[-3000:] + out.stderr[-2000:]
    assert doc["topology"] == "metro8" and doc["flows_installed"] > 0
    (pair,) = doc["pairs"]
    assert {"src_sae", "dst_sae", "path", "keys_requested", "keys_matched"} <= set(pair)
    assert pair["keys_requested"] == pair["keys_matched"] == 2 and len(pair["path"]) - 1 >= 3
    assert doc["reroute"]["keys_matched"] == 1 and doc["reroute"]["reroute_s"] < 5
    assert all(c["ok"] for c in doc["checks"]) and len(doc["checks"]) >= 5
    assert not our_bridges()


def test_a_signal_while_waiting_for_the_mininet_lock_stops_at_once(emulation_host, tmp_path, lock_fd):
    """The test holds the lock; a `qkdnet up` that does not inherit it waits, and SIGTERM ends the
    wait at once with nothing started (it used to wait on, then run the whole bring-up)."""
    state = tmp_path / "waiting"
    proc = subprocess.Popen([QKDNET, "up", "linear6", "--state-dir", str(state)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert "waiting for /tmp/qusec-mininet.lock" in line, line
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - t < 3
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "SIGTERM while waiting for the Mininet lock; nothing was started" in out
    assert not (state / "pki").exists()


def test_wait_lock_gives_up_after_its_timeout(emulation_host, tmp_path, lock_fd):
    t = time.monotonic()
    out = subprocess.run([QKDNET, "up", "linear6", "--wait-lock", "1", "--state-dir", str(tmp_path / "w")],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and time.monotonic() - t < 10, out.stdout + out.stderr
    assert "still holds /tmp/qusec-mininet.lock after 1 s" in out.stderr, out.stderr
    assert not (tmp_path / "w" / "pki").exists()
