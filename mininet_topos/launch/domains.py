"""``qkdnet up FILE --local`` for a multi-domain topology: a parent controller and, per domain,
its own network (PKI, agents, QuSeC with the domain's inventory) under ``DIR/domains/NAME``.

The parent runs first (``python -m quseccontroller.parent``, its federation PKI and config under
``DIR/parent``); each domain's QuSeC is given the parent's address, the federation CA and its
own parent-link certificate, and exports its borders every interval. Every domain's PKI is made
first: each interworking site's KMEs get an ``[etsi020]`` table naming the other KMEs of the site
and trusting their domains' CAs (``mininet_topos.provision.interworking``). ``DIR/network.json``
names the parent, the sites' GS QKD 020 URLs and each domain's own network.json (each one is an ordinary network.json: ``qkdnet
key`` and ``qkdnet status`` work on it as on any network).

``Federated`` is what this launcher and the Mininet one (``mininet_topos.launch.mininet_domains``)
share: the parent process, the interworking KMEs' tables, network.json, a key pair between SAEs
of different domains, waiting for the domains' exports.
"""
from __future__ import annotations

import os
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mininet_topos.launch import rundir
from mininet_topos.launch.fleet import StartStop
from mininet_topos.launch.keypair import client_pair
from mininet_topos.launch.local import LaunchError, LocalNetwork
from mininet_topos.model import Topology
from mininet_topos.provision import federation, interworking
from mininet_topos.provision.inventory import build_domain
from mininet_topos.provision.pki import build_pki

READY_TIMEOUT_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (a GS QKD 020 peer's URL is written before it listens)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ParentProcess:
    """The parent controller as a child process; ``addr`` once it is up."""

    def __init__(self, config: str | Path, state_dir: str | Path) -> None:
        self.config = str(config)
        self.state_dir = Path(state_dir)
        self.proc: subprocess.Popen | None = None
        self.addr = ""
        self._log: Any = None

    @property
    def log_file(self) -> Path:
        return self.state_dir / "parent.log"

    def start(self, timeout: float = READY_TIMEOUT_S) -> str:
        ready = self.state_dir / "parent.json"
        ready.unlink(missing_ok=True)
        self._log = open(self.log_file, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "quseccontroller.parent", "--config", self.config,
                                      "--state-dir", str(self.state_dir), "--parent-pid", str(os.getpid())],
                                     stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise LaunchError(f"the parent controller exited with {self.proc.returncode} (log: {self.log_file})")
            if time.monotonic() > deadline:
                raise LaunchError(f"the parent controller did not start in {timeout:.0f} s (log: {self.log_file})")
            time.sleep(0.05)
        self.addr = json.loads(ready.read_text())["grpc"]
        return self.addr

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


class Federated(StartStop):
    """Several domains under one parent controller: what both multi-domain launchers share.

    ``domains`` maps each domain to its own network (a LocalNetwork or a MininetNetwork, each
    with ``network_json``, ``agents``, ``operator``, ``fleet``, ``state_dir``).
    """

    mode = "local"

    def __init__(self, topology: Topology, state_dir: str | Path, *, progress: TextIO | None = None,
                 policy: str | Path | None = None, interval_s: float = 2.0) -> None:
        if not topology.multi_domain:
            raise ValueError(f"{topology.name}: not a multi-domain topology")
        self.topology = topology
        self.state_dir = Path(state_dir).resolve()
        self.progress = progress
        self.policy = policy
        self.interval_s = interval_s
        self.parent: ParentProcess | None = None
        self.federation: federation.Federation | None = None
        self.domains: dict[str, Any] = {}
        self.network_json = self.state_dir / "network.json"
        self.claim: rundir.Claim | None = None
        self.etsi020: dict[str, Any] = {}   # interworking KME -> its [etsi020] table
        self.pqc: dict[str, Any] = {}       # a PQC link's end -> its [pqc] table

    def _say(self, msg: str) -> None:
        if self.progress is not None:
            print(msg, file=self.progress, flush=True)

    def _start_parent(self) -> tuple[str, federation.Federation]:
        fed = self.federation = federation.build(self.topology, self.state_dir / "parent",
                                                 interval_s=self.interval_s)
        self.parent = ParentProcess(fed.config, self.state_dir / "parent")
        addr = self.parent.start()
        self._say(f"parent controller ready: gRPC {addr} ({len(self.topology.domains)} domains)")
        return addr, fed

    def parent_link(self, domain: str) -> tuple[str, str, str, str]:
        """What ``domain``'s QuSeC is given of its parent: address, federation CA, its cert and key."""
        fed = self.federation
        return self.parent.addr, fed.ca_cert, fed.domains[domain].cert, fed.domains[domain].key

    def _interworking_kme(self, node_id: str, cfg: Any) -> None:
        """The ``[etsi020]`` table of an interworking site's KME (the domains' config_hook)."""
        if node_id in self.etsi020:
            cfg.etsi020 = self.etsi020[node_id]
        if node_id in self.pqc:
            cfg.pqc = self.pqc[node_id]

    def _write_network_json(self, **extra: Any) -> None:
        sites = {site.id: {kme: {"domain": self.topology.nodes[kme].domain,
                                 "etsi020_url": self.domains[self.topology.nodes[kme].domain]
                                 .agents.get(kme, {}).get("etsi020_url", "")}
                           for kme in site.kmes} for site in self.topology.interworking}
        doc = {"topology": self.topology.name, "mode": self.mode,
               "interworking": sites,
               "parent": {"grpc": self.parent.addr if self.parent else "", "ca_cert": self.federation.ca_cert},
               "domains": {d: {"network": str(net.network_json),
                               "qusec": {k: (net.qusec or {}).get(k, "") for k in ("grpc", "http", "https")},
                               "parent_cert": self.federation.domains[d].cert,
                               "parent_key": self.federation.domains[d].key}
                           for d, net in self.domains.items()},
               **extra}
        tmp = self.network_json.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.network_json)

    def domain_of_sae(self, sae: str) -> Any:
        """The network of the domain ``sae`` belongs to (KeyError naming the known SAEs)."""
        s = self.topology.saes.get(sae)
        if s is None:
            raise KeyError(f"unknown SAE {sae!r} (known: {', '.join(sorted(self.topology.saes))})")
        return self.domains[self.topology.nodes[s.node].domain]

    def key_pair(self, master: str, slave: str, number: int = 1, size: int | None = None,
                 fresh: bool = False) -> dict:
        """enc_keys at the master's KME, dec_keys at the slave's (each SAE with its own domain's
        PKI), compared: keypair.check_pair's result."""
        m, s = self.domain_of_sae(master), self.domain_of_sae(slave)
        return client_pair(json.loads(m.network_json.read_text()), master, slave, number, size, fresh=fresh,
                           slave_doc=json.loads(s.network_json.read_text()))

    def dead(self) -> list[str]:
        """Agents (DOMAIN/NODE) and the parent that exited on their own."""
        gone = [f"{d}/{n}" for d, net in self.domains.items() for n in net.fleet.dead()]
        if self.parent is not None and self.parent.proc is not None and self.parent.proc.poll() is not None:
            gone.append("parent")
        return gone

    def parent_status(self, domain: str) -> dict:
        """What ``domain``'s QuSeC says of its parent link (its /status ``parent``; {} when away)."""
        net = self.domains[domain]
        try:
            return net.operator.status(timeout=2).get("parent", {})
        except (OSError, ValueError, AttributeError):
            return {}

    def wait_exported(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the parent took an export from every domain's QuSeC made after every domain was
        up (its agents registered): one that names their SAEs and borders."""
        since = time.time()
        deadline = time.monotonic() + timeout

        def fresh(d: str) -> bool:
            st = self.parent_status(d)
            return bool(st.get("ok")) and st.get("last_ok_at", 0) > since

        while not all(fresh(d) for d in self.domains):
            if time.monotonic() > deadline:
                late = [d for d in self.domains if not fresh(d)]
                raise LaunchError(f"no export reached the parent from {late} in {timeout:.0f} s "
                                  f"(logs: {self.state_dir}/domains/DOMAIN/qusec/gateway.log)")
            time.sleep(0.1)


class MultiDomainNetwork(Federated):
    """Every domain of ``topology`` as a LocalNetwork, under one parent controller."""

    def start(self) -> Path:
        try:
            self.claim = rundir.claim(self.state_dir, "local")
        except rundir.StateDirInUse as exc:
            raise LaunchError(str(exc)) from None
        self.claim.stop_crashed(self._say)
        n = len(self.topology.domains)
        self._start_parent()
        # every domain's PKI first: an interworking KME trusts its peer domain's CA for GS QKD 020
        pkis = {dom: build_pki(self.topology.domain_view(dom), self.state_dir / "domains" / dom / "pki")
                for dom in self.topology.domains}
        ports = {node: free_port() for node in interworking.site_kmes(self.topology)}
        self.etsi020 = interworking.etsi020_tables(self.topology, lambda node: f"127.0.0.1:{ports[node]}",
                                                   lambda dom: pkis[dom].ca_cert)
        pqc_ports = {node: free_port() for node in interworking.pqc_ends(self.topology)}
        self.pqc = interworking.pqc_tables(self.topology, lambda node: f"127.0.0.1:{pqc_ports[node]}",
                                           lambda dom: pkis[dom].ca_cert)
        for i, dom in enumerate(self.topology.domains, 1):
            self._say(f"[{i}/{n}] domain {dom}")
            net = LocalNetwork(self.topology.domain_view(dom), self.state_dir / "domains" / dom,
                               progress=self.progress, policy=self.policy,
                               inventory=build_domain(self.topology, dom),
                               parent=self.parent_link(dom), config_hook=self._interworking_kme)
            net.pki = pkis[dom]
            self.domains[dom] = net
            net.start()
        self._write_network_json()
        self._say(f"network {self.topology.name} up: {n} domains, "
                  f"{sum(len(d.agents) for d in self.domains.values())} agents; {self.network_json}")
        return self.network_json

    def stop(self) -> None:
        for net in reversed(list(self.domains.values())):
            net.stop()
        if self.parent is not None:
            self.parent.stop()
        if self.claim is not None:
            self.claim.release()
            self.claim = None
