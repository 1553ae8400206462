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


def test_launcher_mark_names_a_live_launcher_only(tmp_path):
    from mininet_topos.launch.clean import launcher_alive
    mark = tmp_path / "launcher.pid"
    assert launcher_alive(mark) is None                   # no mark
    live = spawn("qkdnet", "up")
    try:
        mark.write_text(f"{live.pid}\n")
        time.sleep(0.2)                                   # let it exec (cmdline is set then)
        assert launcher_alive(mark) == live.pid
    finally:
        live.kill()
        live.wait()
    assert launcher_alive(mark) is None                   # crashed: clean may go ahead
    mark.write_text("garbage\n")
    assert launcher_alive(mark) is None
