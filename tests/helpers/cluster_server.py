"""A second Mininet server for the cluster tests: a network namespace with its own sshd and its
own Open vSwitch, reached over a veth pair, as separate from this machine as Mininet can tell.

``NamespaceServer(workdir).start()`` (root) makes:

* network namespace ``qusec-srv2`` with ``eth0`` at ``10.213.0.2/24``, its peer ``qcl-veth0`` at
  ``10.213.0.1/24`` in the root namespace (the address QuSeC's switches and tunnels use);
* an ``ovsdb-server`` and an ``ovs-vswitchd`` running inside the namespace, with their own run
  directory, database and logs under ``workdir/ovs`` (userspace datapath: no kernel module is
  shared with the first server's OVS);
* an ``sshd`` inside the namespace on port 22 with a config, host key and authorized key in
  ``workdir/ssh`` (root login by that key only; ``SetEnv OVS_RUNDIR=...`` so every ``ovs-vsctl``
  a session runs talks to this server's OVS, not the machine's);
* with ``private=[PATH, ...]``, those paths in sshd's own mount namespace as empty tmpfs: what
  the first server writes there this one does not see, and the other way round (another
  machine's disk, for a state directory that is not shared);
* an ssh client config (``self.ssh_config``) naming the key and the host key, so nothing in
  ``~/.ssh`` is read or written.

``stop()`` ends the daemons and deletes the namespace and the veth; ``leftovers()`` says what
of it still exists (empty after a clean stop).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

NETNS = "qusec-srv2"
ROOT_VETH = "qcl-veth0"
ROOT_IP = "10.213.0.1"
SERVER_IP = "10.213.0.2"
PREFIX = 24
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def _run(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, **kw)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _in_ns(*argv: str, **kw) -> subprocess.CompletedProcess:
    return _run("ip", "netns", "exec", NETNS, *argv, **kw)


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:.0f} s")
        time.sleep(0.1)


class NamespaceServer:
    """The second server (see the module docstring); a context manager."""

    def __init__(self, workdir: str | os.PathLike, private: list[str | os.PathLike] = ()) -> None:
        self.dir = Path(workdir).resolve()
        # Paths this server sees as its own empty disk (a tmpfs in sshd's mount namespace): a
        # state directory there is not shared with the first server, as on another machine.
        self.private = [str(Path(p).resolve()) for p in private]
        self.ovs_dir = self.dir / "ovs"
        self.ssh_dir = self.dir / "ssh"
        self.ssh_config = self.ssh_dir / "client_config"
        self.address = SERVER_IP
        self.local_address = ROOT_IP
        self.procs: dict[str, subprocess.Popen] = {}

    # -- bring-up ----------------------------------------------------------------------------
    def start(self) -> "NamespaceServer":
        self._remove()          # what a crashed earlier test left of this server (ours by name)
        self.dir.mkdir(parents=True, exist_ok=True)
        _run("ip", "netns", "add", NETNS)
        _run("ip", "link", "add", ROOT_VETH, "type", "veth", "peer", "name", "eth0", "netns", NETNS)
        _run("ip", "addr", "add", f"{ROOT_IP}/{PREFIX}", "dev", ROOT_VETH)
        _run("ip", "link", "set", ROOT_VETH, "up")
        _in_ns("ip", "addr", "add", f"{SERVER_IP}/{PREFIX}", "dev", "eth0")
        _in_ns("ip", "link", "set", "eth0", "up")
        _in_ns("ip", "link", "set", "lo", "up")
        self._start_ovs()
        self._start_sshd()
        return self

    def _start_ovs(self) -> None:
        d = self.ovs_dir
        shutil.rmtree(d, ignore_errors=True)         # a fresh database every start
        d.mkdir(parents=True)
        db = d / "conf.db"
        _run("ovsdb-tool", "create", str(db), str(OVS_SCHEMA))
        env = self.ovs_env()
        log = open(d / "daemons.log", "ab")
        self.procs["ovsdb-server"] = subprocess.Popen(
            ["ip", "netns", "exec", NETNS, "ovsdb-server", str(db),
             f"--remote=punix:{d}/db.sock", "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
             f"--unixctl={d}/ovsdb-server.ctl", f"--pidfile={d}/ovsdb-server.pid",
             f"--log-file={d}/ovsdb-server.log"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        _wait(lambda: (d / "db.sock").exists(), 15, "ovsdb-server of the second server")
        _in_ns("ovs-vsctl", "--no-wait", "init", env=env)
        self.procs["ovs-vswitchd"] = subprocess.Popen(
            ["ip", "netns", "exec", NETNS, "ovs-vswitchd", f"unix:{d}/db.sock",
             f"--unixctl={d}/ovs-vswitchd.ctl", f"--pidfile={d}/ovs-vswitchd.pid",
             f"--log-file={d}/ovs-vswitchd.log"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        _wait(lambda: _in_ns("ovs-vsctl", "--timeout=2", "show", env=env, check=False).returncode == 0,
              20, "ovs-vswitchd of the second server")

    def ovs_env(self) -> dict[str, str]:
        d = str(self.ovs_dir)
        return dict(os.environ, OVS_RUNDIR=d, OVS_DBDIR=d, OVS_LOGDIR=d)

    def _start_sshd(self) -> None:
        d = self.ssh_dir
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        for name in ("host_key", "client_key"):
            (d / name).unlink(missing_ok=True)
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"qusec-test-{name}",
                 "-f", str(d / name))
        (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
        os.chmod(d / "authorized_keys", 0o600)
        (d / "known_hosts").write_text(f"{SERVER_IP} {(d / 'host_key.pub').read_text()}")
        (d / "sshd_config").write_text(
            f"ListenAddress {SERVER_IP}\nPort 22\nHostKey {d}/host_key\n"
            f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nUseDNS no\nStrictModes no\n"
            "PermitTunnel yes\nMaxSessions 200\nMaxStartups 200\n"
            f"SetEnv OVS_RUNDIR={self.ovs_dir} OVS_DBDIR={self.ovs_dir} OVS_LOGDIR={self.ovs_dir}\n"
            "Subsystem sftp internal-sftp\n")
        self.ssh_config.write_text(
            f"Host {SERVER_IP}\n  User root\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n"
            "  GlobalKnownHostsFile /dev/null\n  ConnectTimeout 10\n")
        Path("/run/sshd").mkdir(exist_ok=True)      # sshd's privilege separation directory
        _run("/usr/sbin/sshd", "-t", "-f", str(d / "sshd_config"))
        log = open(d / "sshd.log", "ab")
        mount = 'for d in "$@"; do mkdir -p "$d" && mount -t tmpfs -o mode=0755 qusec-srv2 "$d" || exit 1; done; '
        self.procs["sshd"] = subprocess.Popen(
            ["ip", "netns", "exec", NETNS, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", mount + f'exec /usr/sbin/sshd -D -e -f "{d}/sshd_config"', "sh", *self.private],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait(lambda: self.ssh("true", check=False).returncode == 0, 20, "sshd of the second server")

    def ssh(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``command`` on the second server as root over ssh (the way Mininet does)."""
        return _run("ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", SERVER_IP, command,
                    check=check, timeout=30)

    def network_left(self) -> dict[str, list[str]]:
        """What a QKD network left on this server (empty when nothing): OVS bridges in its OVS,
        interfaces of our switches and tunnels (``qsN-ethM``, any VXLAN device), Mininet host
        shells and our processes running in its namespace."""
        bridges = self.ssh("ovs-vsctl --timeout=5 list-br").stdout.split()
        links = self.ssh("ip -o link show").stdout.splitlines()
        vxlan = self.ssh("ip -o link show type vxlan").stdout.splitlines()
        ns_pids = _run("ip", "netns", "pids", NETNS, check=False).stdout.split()
        daemons = {str(p.pid) for p in self.procs.values()}
        procs = []
        for pid in ns_pids:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if pid not in daemons and ("mininet:" in cmd or "kms_agents" in cmd or "mnexec" in cmd):
                procs.append(f"{pid} {cmd[:80]}")
        found = {"OVS bridges": bridges,
                 "interfaces": [l.split(":")[1].strip() for l in links
                                if l.split(":")[1].strip().startswith(("qs", "qmgmt"))],
                 "VXLAN devices": [l.split(":")[1].strip() for l in vxlan],
                 "processes": procs}
        return {k: v for k, v in found.items() if v}

    # -- teardown ----------------------------------------------------------------------------
    def stop(self) -> None:
        """End sshd and OVS (and anything else left in the namespace), delete the namespace
        and the veth."""
        for name in ("sshd", "ovs-vswitchd", "ovsdb-server"):
            proc = self.procs.pop(name, None)
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        self._remove()

    def _remove(self) -> None:
        """Kill whatever runs in the namespace, delete it and the veth."""
        if NETNS in _run("ip", "netns", "list").stdout.split():
            for pid in _run("ip", "netns", "pids", NETNS, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run("ip", "netns", "del", NETNS, check=False)
        _run("ip", "link", "del", ROOT_VETH, check=False)

    def leftovers(self) -> list[str]:
        """What of this server still exists: the namespace, the veth, daemon processes."""
        left = []
        if NETNS in _run("ip", "netns", "list").stdout.split():
            left.append(f"netns {NETNS}")
        if _run("ip", "link", "show", ROOT_VETH, check=False).returncode == 0:
            left.append(f"veth {ROOT_VETH}")
        for pidfile in (self.ovs_dir / "ovsdb-server.pid", self.ovs_dir / "ovs-vswitchd.pid",
                        self.ssh_dir / "sshd.pid"):
            try:
                pid = int(pidfile.read_text().strip())
                os.kill(pid, 0)
                left.append(f"{pidfile.stem} (pid {pid})")
            except (OSError, ValueError):
                pass
        return left

    def __enter__(self) -> "NamespaceServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tools_missing() -> list[str]:
    """What this machine lacks to run a NamespaceServer (empty when it can)."""
    return [t for t in ("sshd", "ssh", "ssh-keygen", "sudo", "ovsdb-server", "ovs-vswitchd",
                        "ovsdb-tool", "mnexec")
            if not (shutil.which(t) or Path(f"/usr/sbin/{t}").exists())]
