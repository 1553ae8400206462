"""The servers of a cluster run (``qkdnet up TOPOLOGY --cluster SERVER[,SERVER...]``): who they
are, how to reach them over ssh, the run's record, and the clean-up on each of them.

The first server is the machine ``qkdnet up`` runs on (QuSeC runs there); the others are
reached with ``ssh [-F SSH_CONFIG] -o BatchMode=yes SERVER sudo -n -E COMMAND``, the way Mininet's
cluster edition reaches them. A server that does not share the state directory (the usual
case: another machine) gets, at the same paths, only the files of what it runs (its nodes'
agent configs, certificates and simulated link secrets, its SAEs' certificates, the switches'
certificate); their ``agent.json`` comes back over ssh. ``STATE/cluster.json`` records the servers, the ssh config and
which hosts each server holds, so ``qkdnet clean`` can stop a crashed run's agents and remove its
bridges, tunnels and host shells on every server. ``python -m mininet_topos.launch.servers
stop-agents|clean STATE INDEX`` is what runs on a remote server (the same checkout and
virtualenv must be at the same path there).
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from mininet_topos.launch.clean import cleanup_ours, kill_all, leftover_pids
from mininet_topos.launch.plan import MGMT_BRIDGE

RECORD = "cluster.json"
SSH_TIMEOUT_S = 60.0


class ClusterError(RuntimeError):
    """A server cannot be used (the message names the server and the command that failed)."""


@dataclass(frozen=True)
class Server:
    name: str         # as given on the command line
    address: str      # the IPv4 address the other servers reach it at
    local: bool       # the first server: this machine


def parse(spec: str) -> list[str]:
    """``"a,b,c"`` -> ["a", "b", "c"]; ClusterError for an empty name or a server given twice."""
    names = [s.strip() for s in spec.split(",")]
    if not names or any(not n for n in names):
        raise ClusterError(f"--cluster {spec!r}: expected SERVER[,SERVER...] with no empty name")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ClusterError(f"--cluster {spec!r}: {', '.join(dup)} given twice")
    return names


def problems(spec: str, topology: object, local: bool = False) -> list[str]:
    """What is wrong with ``--cluster SPEC`` for ``topology`` (empty when it can run): checked
    with the topology and the policy, before anything starts."""
    if local:
        return [f"--cluster {spec}: not with --local (cluster mode runs Mininet on every server)"]
    if topology is None:
        return []
    if getattr(topology, "multi_domain", False):
        return [f"--cluster {spec}: {topology.name} has several domains; cluster mode runs one "
                "(bring one up with --domain NAME)"]
    try:
        names = parse(spec)
        n = len(topology.nodes)
        if len(names) > n:
            return [f"--cluster {spec}: {len(names)} servers for {topology.name}'s {n} nodes: every "
                    "server needs a node"]
        resolve(names)
    except ClusterError as exc:
        return [str(exc)]
    return []


def _ipv4(name: str) -> str:
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        pass
    try:
        return socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]
    except (socket.gaierror, IndexError):
        raise ClusterError(f"server {name!r}: no IPv4 address (not an address, and the name "
                           "does not resolve)") from None


def local_addresses() -> set[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    return {f.split("/")[0] for line in out.splitlines() for f in line.split()[3:4]}


def source_address(remote: str) -> str:
    """This machine's address on the route to ``remote`` (what ``remote`` sees us as)."""
    out = subprocess.run(["ip", "-o", "route", "get", remote], capture_output=True, text=True).stdout.split()
    if "src" not in out:
        raise ClusterError(f"no route from this machine to server {remote}")
    return out[out.index("src") + 1]


def resolve(names: list[str]) -> list[Server]:
    """The servers named on the command line, the first being this machine."""
    mine = local_addresses() | {"127.0.0.1"}
    first = names[0]
    if first != "localhost" and _ipv4(first) not in mine:
        raise ClusterError(f"--cluster: the first server ({first}) must be this machine (QuSeC "
                           f"and the launcher run there): localhost or one of {', '.join(sorted(mine))}")
    others = []
    for n in names[1:]:
        ip = _ipv4(n)
        if ip in mine:
            raise ClusterError(f"--cluster: server {n} ({ip}) is this machine again")
        others.append(Server(n, ip, False))
    if not others:
        return [Server(first, "127.0.0.1", True)]
    address = _ipv4(first) if first != "localhost" else source_address(others[0].address)
    if address.startswith("127."):
        address = source_address(others[0].address)
    return [Server(first, address, True), *others]


def ssh_argv(server: Server, ssh_config: str | None, command: list[str],
             ssh_options: tuple[str, ...] = ()) -> list[str]:
    """``ssh ... SERVER sudo -n -E COMMAND`` (quoted for the remote shell)."""
    import shlex
    cfg = ["-F", ssh_config] if ssh_config else []
    return ["ssh", *cfg, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *ssh_options, server.address,
            shlex.join(["sudo", "-n", "-E", *command])]


def run_on(server: Server, ssh_config: str | None, command: list[str],
           timeout: float = SSH_TIMEOUT_S, ssh_options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``command`` as root on ``server`` (locally when it is this machine)."""
    argv = command if server.local else ssh_argv(server, ssh_config, command, ssh_options)
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"timed out after {timeout:.0f} s")


# -- the run's record ---------------------------------------------------------------------------
def write_record(state_dir: Path, servers: list[Server], ssh_config: str | None,
                 hosts: dict[int, list[str]]) -> str:
    """STATE/cluster.json; returns its token (each server checks it sees the same file)."""
    token = secrets.token_hex(8)
    tmp = state_dir / (RECORD + ".tmp")
    tmp.write_text(json.dumps({"servers": [asdict(s) for s in servers], "ssh_config": ssh_config,
                               "hosts": {str(i): names for i, names in hosts.items()},
                               "token": token}, indent=1))
    tmp.replace(state_dir / RECORD)
    return token


def read_record(state_dir: Path) -> dict | None:
    try:
        d = json.loads((state_dir / RECORD).read_text())
        d["servers"] = [Server(**s) for s in d["servers"]]
        return d
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_servers(state_dir: Path, servers: list[Server], ssh_config: str | None,
                  token: str) -> dict[str, bool]:
    """Every remote server answers over ssh, runs sudo without a password, has this Python and
    Open vSwitch: ClusterError naming the server and what failed. Returns, per server name,
    whether it sees this state directory (the same file system at the same path: nothing to
    push) or not (each gets the files of what it runs, ``push``)."""
    record = state_dir / RECORD
    probe = ["sh", "-c", f'test -x "{sys.executable}" && ovs-vsctl --timeout=5 show >/dev/null && '
                         f'{{ cat "{record}" 2>/dev/null || true; }}']
    shared = {}
    for s in servers:
        if s.local:
            continue
        proc = run_on(s, ssh_config, probe)
        if proc.returncode:
            raise ClusterError(
                f"server {s.name}: `{' '.join(ssh_argv(s, ssh_config, probe))}` failed (exit "
                f"{proc.returncode}): {proc.stderr.strip()[-400:] or proc.stdout.strip()[-400:]}\n"
                "every server needs passwordless ssh and sudo, Open vSwitch running and this "
                f"checkout's virtualenv at {sys.executable} (docs/emulation.md, Cluster mode)")
        try:
            shared[s.name] = json.loads(proc.stdout).get("token") == token
        except ValueError:
            shared[s.name] = False
    return shared


def push(server: Server, ssh_config: str | None, files: list[Path], ssh_options: tuple[str, ...] = ()) -> None:
    """Copy ``files`` (absolute paths, modes kept) to the same paths on ``server`` (tar over ssh)."""
    if not files:
        return
    rel = sorted({str(f.resolve().relative_to("/")) for f in files})
    tar = subprocess.Popen(["tar", "-C", "/", "-cf", "-", "--", *rel], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    argv = ssh_argv(server, ssh_config, ["tar", "-C", "/", "-xpf", "-"], ssh_options)
    try:
        proc = subprocess.run(argv, stdin=tar.stdout, capture_output=True, text=True, timeout=SSH_TIMEOUT_S)
    finally:
        tar.stdout.close()
        err = tar.stderr.read().decode(errors="replace")
        tar.stderr.close()
        tar.wait()
    if tar.returncode or proc.returncode:
        raise ClusterError(f"server {server.name}: copying {len(rel)} file(s) failed: "
                           f"{(err + proc.stderr).strip()[-400:]}")


def on_remotes(state_dir: Path, action: str, say: Callable[[str], None] = print) -> int:
    """Run ``action`` (stop-agents or clean) on every remote server of the run recorded in
    ``state_dir``; how many servers failed (each failure is said)."""
    record = read_record(state_dir)
    if record is None:
        return 0
    failed = 0
    for i, s in enumerate(record["servers"]):
        if s.local:
            continue
        proc = run_on(s, record.get("ssh_config"),
                      [sys.executable, "-m", "mininet_topos.launch.servers", action, str(state_dir), str(i)])
        if proc.returncode:
            failed += 1
            say(f"server {s.name}: {action} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
        elif proc.stdout.strip():
            say("\n".join(f"server {s.name}: {line}" for line in proc.stdout.strip().splitlines()))
    if action == "clean" and not failed:
        forget(state_dir)
    return failed


def forget(state_dir: Path) -> None:
    """The run is over on every server: its record and ssh control sockets go (a later clean
    does not reach for the servers)."""
    (state_dir / RECORD).unlink(missing_ok=True)
    shutil.rmtree(control_dir(state_dir), ignore_errors=True)


def control_dir(state_dir: Path) -> str:
    """The run's ssh control sockets (ControlMaster): short, a socket path's limit is 108 bytes."""
    return str(Path(tempfile.gettempdir()) / f"qcl-{hashlib.sha1(str(state_dir).encode()).hexdigest()[:12]}")


# -- what runs on a remote server ---------------------------------------------------------------
def _agents(state_dir: Path) -> dict[int, str]:
    return {p: w for p, w in leftover_pids(state_dir).items() if "kms_agents" in w or "kms-agent" in w}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("stop-agents", "clean"):
        print("usage: python -m mininet_topos.launch.servers stop-agents|clean STATE_DIR INDEX",
              file=sys.stderr)
        return 2
    action, state_dir, index = argv[0], Path(argv[1]).resolve(), argv[2]
    agents = _agents(state_dir)
    if agents:
        kill_all(agents, grace=10.0)
        print(f"stopped {len(agents)} agent process(es) (with their sudo)")
    if action == "clean":
        record = read_record(state_dir) or {}
        names = set(record.get("hosts", {}).get(index, []))
        cleanup_ours(names or None, say=print)
        _del_bridges(sorted(n for n in names if n.startswith(MGMT_BRIDGE[:-1])))
    return 0


def _del_bridges(bridges: list[str]) -> None:
    """This server's management bridge (``qmgmtI``) and its tunnel, which cleanup_ours (one
    machine's names) does not know."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    devs = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    gone = [d for d in devs if d in bridges or any(d.startswith(f"{b}-eth") for b in bridges)]
    for d in gone:
        subprocess.run(["ip", "link", "del", d], capture_output=True)
    if gone:
        print(f"removed {' '.join(gone)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
