"""``qkdnet clean`` finds leftover processes of one state directory, and only those."""
from __future__ import annotations

import subprocess
import sys
import time

from mininet_topos.launch.clean import kill_all, leftover_pids

SLEEPER = "import time; time.sleep(60)"


def spawn(*argv: str) -> subprocess.Popen:
    # argv after -c end up in /proc/PID/cmdline, like an agent's --config STATE/NODE/agent.toml.
    return subprocess.Popen([sys.executable, "-c", SLEEPER, *argv])


def test_leftover_pids_are_those_naming_the_state_dir(tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    agent = spawn("-m", "kms_agents.agent", "--config", f"{mine}/A/agent.toml")
    osken = spawn("osken-manager", "--config-file", f"{mine}/qusec/qusec.conf", "quseccontroller.app")
    elsewhere = spawn("-m", "kms_agents.agent", "--config", f"{other}/A/agent.toml")
    unrelated = spawn("something", f"{mine}/notes.txt")        # names the dir, but is not ours
    procs = [agent, osken, elsewhere, unrelated]
    try:
        time.sleep(0.2)
        found = leftover_pids(mine)
        assert set(found) == {agent.pid, osken.pid}
        kill_all(found, grace=2.0)
        agent.wait(5)
        osken.wait(5)
        assert leftover_pids(mine) == {}
        assert elsewhere.poll() is None and unrelated.poll() is None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


HOLDER = """import sys, time
from mininet_topos.launch import rundir
held = rundir.claim(sys.argv[1], "local")
print("held", flush=True)
time.sleep(60)
"""


def test_a_state_dir_is_held_by_one_live_launcher_and_a_crash_frees_it(tmp_path):
    from mininet_topos.launch import rundir
    state = tmp_path / "state"
    assert rundir.holder(state) is None                   # never used
    live = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "held"
        assert rundir.holder(state) == live.pid
        before = sorted(p.name for p in state.iterdir())
        try:
            rundir.claim(state, "local")
        except rundir.StateDirInUse as exc:
            assert f"pid {live.pid}" in str(exc) and "nothing in it was changed" in str(exc)
        else:
            raise AssertionError("a held state dir was claimed twice")
        assert sorted(p.name for p in state.iterdir()) == before
        entry = next(r for r in rundir.runs() if r.state_dir == state.resolve())
        assert (entry.pid, entry.mode) == (live.pid, "local") and entry.alive()
    finally:
        live.kill()                                       # a crash: no release
        live.wait()
    crashed = next(r for r in rundir.runs() if r.state_dir == state.resolve())
    assert not crashed.alive() and rundir.holder(state) is None
    again = rundir.claim(state, "local")                  # the next launcher takes it over
    try:
        assert again.crashed is not None and again.crashed.pid == live.pid
        assert rundir.holder(state) == __import__("os").getpid()
    finally:
        again.release()
    assert rundir.holder(state) is None and not any(r.state_dir == state.resolve() for r in rundir.runs())
