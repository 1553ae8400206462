"""Every shell command the README and docs/ show (their ```sh blocks) runs as written, after
`make demo`, from the repository: the ones that need no network as they are, the ones that use a
running network against one brought up the way the docs say.

Rules: a block runs as one bash script (set -e) from a scratch directory where `.venv` is this
checkout's; `qkdnet up ...` lines stay up, so they run in the background until their
network.json appears and are stopped with SIGTERM (exit 0) when the block is done; a block that
uses a network it does not start (its state dir) gets that network first (NETWORKS says how the
docs bring each up); `make ...` lines run in the repository. `make test` is the command running
this very test, so it is only checked to exist.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.emulation, pytest.mark.slow, pytest.mark.usefixtures("no_leftovers")]

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The networks docs use without starting them, and the command the docs give for each.
NETWORKS = {"/tmp/q": ".venv/bin/qkdnet up linear6 --local --state-dir /tmp/q",
            "/tmp/qkdnet-metro8": ".venv/bin/qkdnet up metro8"}
NOT_RUN = {"make test": "it is the command running this test"}


def blocks() -> list[tuple[str, list[str]]]:
    """(FILE:LINE, the block's commands with continuation lines joined) of every ```sh block."""
    out = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() == "```sh":
                start, body = i + 1, []
                i += 1
                while lines[i].strip() != "```":
                    body.append(lines[i])
                    i += 1
                text = "\n".join(body).replace("\\\n", " ")
                out.append((f"{doc.relative_to(ROOT)}:{start}", [l for l in text.splitlines() if l.strip()]))
            i += 1
    return out


def strip_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line).strip()


def state_dir_of(up: str) -> Path:
    words = shlex.split(up)
    if "--state-dir" in words:
        return Path(words[words.index("--state-dir") + 1])
    topo = next((w for w in words[words.index("up") + 1:] if not w.startswith("-")), "metro8")
    return Path(f"/tmp/qkdnet-{topo}")


class Ups:
    """The `qkdnet up` processes a block keeps running."""

    def __init__(self, cwd: Path) -> None:
        self.cwd, self.procs = cwd, []

    def start(self, line: str) -> None:
        state = state_dir_of(line)
        (state / "network.json").unlink(missing_ok=True)
        proc = subprocess.Popen(["bash", "-c", line], cwd=self.cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        self.procs.append((line, proc))
        deadline = time.monotonic() + 180
        while not (state / "network.json").exists():
            assert proc.poll() is None, f"{line}: exited {proc.returncode}:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, f"{line}: no {state}/network.json after 180 s"
            time.sleep(0.3)
        json.loads((state / "network.json").read_text())

    def stop(self) -> None:
        for line, proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for line, proc in self.procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"{line}: SIGTERM -> exit {proc.returncode}:\n{out[-3000:]}"
        self.procs = []


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


def test_the_docs_have_shell_blocks_and_the_two_commands() -> None:
    found = {strip_comment(c) for _, cmds in blocks() for c in cmds}
    assert {"make demo", "make test"} <= found and len(blocks()) >= 6, blocks()


@pytest.mark.parametrize("where, commands", blocks(), ids=[w for w, _ in blocks()])
def test_documented_shell_commands_run_as_written(emulation_host, sandbox, where, commands) -> None:
    cmds = [strip_comment(c) for c in commands]
    for c in cmds:
        if c in NOT_RUN:
            target = c.split()[1]
            assert subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True).returncode == 0
    cmds = [c for c in cmds if c not in NOT_RUN]
    ups_here = [c for c in cmds if re.search(r"\bqkdnet up\b", c)]
    rest = [c for c in cmds if c not in ups_here]
    script = "\n".join(rest)
    needs = [d for d in NETWORKS if d in script and not any(state_dir_of(u) == Path(d) for u in ups_here)]
    ups = Ups(sandbox)
    try:
        for d in needs:
            ups.start(NETWORKS[d])
        for line in ups_here:
            ups.start(line)
        if not needs and not any(str(state_dir_of(u)) in script for u in ups_here):
            ups.stop()            # the rest does not use them (and `qkdnet clean` waits for them)
        if script:
            cwd = ROOT if all(c.startswith("make ") for c in rest) else sandbox
            out = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd,
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, f"{where}: exit {out.returncode}\n{script}\n--- stdout\n" \
                                        f"{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}"
    finally:
        ups.stop()
