"""``qkdnet up TOPOLOGY``: a whole QKD network in Mininet + OVS, under QuSeC's OpenFlow control.

``MininetNetwork(topology, state_dir)`` starts QuSeC (osken-manager + gateway, OpenFlow and
gRPC in the root namespace), builds the Mininet network (``mininet_topos.launch.topos``: one OVS
switch per node, a vKMS host per node, SAE hosts, a management bridge for agent <-> QuSeC
traffic), the PKI with the addresses each node is reached at, one ``kms-agent`` per node
host, waits until every agent is registered and QuSeC's LLDP view matches the file, and
writes ``network.json``. SAE calls run inside the SAE hosts (``python -m
mininet_topos.launch.sae ...``), which print key IDs and SHA-256 digests, never keys.

A ``MininetNetwork`` can also be one domain of several in one Mininet (``shared=True``,
``mininet_topos.launch.mininet_domains``): its plan is the domain's part of the whole plan, its
QuSeC has the domain's inventory and parent link, and the launcher of every domain builds and
stops the one Mininet (``build_mininet``) and hands it over as ``net``.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from mininet_topos.launch import rundir
from mininet_topos.launch.clean import cleanup_ours
from mininet_topos.launch.fleet import AgentFleet, AgentStartError, LaunchedNetwork, Steps
from mininet_topos.launch.keypair import check_pair, seen
from mininet_topos.launch.operator import OperatorClient
from mininet_topos.launch.lock import EmulationError, wait_for
from mininet_topos.launch.sae import CALL_TIMEOUT_S as SAE_CALL_TIMEOUT_S
from mininet_topos.launch.sae import call as sae_call
from mininet_topos.launch.plan import EmulationPlan, plan
from mininet_topos.launch.topos import QkdTopo, QuSeCRemote, tx_checksum_off
from mininet_topos.model import Topology

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 180.0          # whole bring-up (35 nodes on 2 cores needs well under this)
RELAY_FLOW_PRIORITY = 30000      # QuSeC's per-hop relay flows (quseccontroller.flows)
# Every vKMS host has its own network namespace, so agents use fixed, well-known ports there:
# a restarted agent comes back on the same addresses its neighbours and QuSeC already know.
AGENT_PORTS = {"etsi014": 443, "etsi004": 4004, "relay": 7000}


DEFAULT_POLICY = """# Policy of this emulated network (edit, then `qpolicy reload` in the CLI).
# Reference: docs/policy.md.
[default]
action = "allow"
paths = 1
metric = "key_aware"
security_level = "qkd"
"""


class MininetNetwork(LaunchedNetwork):
    """QuSeC + Mininet + one vKMS agent per node host, for one topology."""

    def __init__(self, topology: Topology, state_dir: str | Path, *, datapath: str | None = None,
                 policy: str | Path | None = None, progress: TextIO | None = None,
                 ready_timeout: float = READY_TIMEOUT_S, static_arp: bool = True,
                 emulation_plan: EmulationPlan | None = None, shared: bool = False,
                 inventory: Any = None, parent: tuple[str, str, str, str] | None = None,
                 config_hook: Callable[[str, Any], None] | None = None,
                 switch_ca: str | None = None) -> None:
        self.topology = topology
        self.plan: EmulationPlan = emulation_plan or plan(topology)
        # One domain of several (launch/mininet_domains.py): the Mininet is the launcher's; this
        # QuSeC gets the domain's inventory (borders) and its parent link (address, CA, cert, key);
        # config_hook(node, AgentConfig) adds the [etsi020] tables; switch_ca: the CA of the
        # switches' certificate (default: this network's).
        self.shared = shared
        self.inventory = inventory
        self.parent = parent
        self.config_hook = config_hook
        self.switch_ca = switch_ca
        self.state_dir = Path(state_dir).resolve()
        self.datapath = datapath
        self.policy_src = Path(policy).resolve() if policy else None
        self.policy_file = self.state_dir / "policy.toml"
        self.progress = progress
        self.ready_timeout = ready_timeout
        self.static_arp = static_arp
        self.net: Any = None
        self.controller: Any = None
        self.pki: Any = None
        self.fleet = AgentFleet(self._spawn_in_host)
        self.procs: dict[str, subprocess.Popen] = self.fleet.procs
        self.agents: dict[str, dict] = self.fleet.agents
        self.qusec: dict[str, str] = {}
        self.operator: OperatorClient | None = None
        self.network_json = self.state_dir / "network.json"
        self.timings: dict[str, float] = {}
        self.claim: rundir.Claim | None = None
        self._owned = False              # this run held the state dir (so its leftovers are ours)
        self._t0 = 0.0

    # -- progress ----------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if self.progress is not None:
            print(msg, file=self.progress, flush=True)

    def _mark(self, phase: str) -> None:
        self.timings[phase] = round(time.monotonic() - self._t0, 3)

    # -- bring-up ----------------------------------------------------------------------------
    def start(self) -> Path:
        """Bring everything up; returns network.json. On failure, stop() undoes what started."""
        from mininet_topos.launch import ovs
        self._t0 = time.monotonic()
        ovs.ensure_running()
        self.datapath = self.datapath or ovs.datapath()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._take_state_dir()
        p, topo = self.plan, self.topology
        self.say(f"{topo.name}: {len(p.switches)} switches, {len(p.links)} switch links, "
                 f"{len(p.node_hosts)} vKMS hosts, {len(p.sae_hosts)} SAE hosts "
                 f"(OVS {self.datapath} datapath); state in {self.state_dir}")
        self._build_pki()
        self._start_qusec()
        self._start_mininet()
        # Agents start only once LLDP has found every link: 75 agents booting at once (seconds
        # of CPU each) starve osken-manager and ovs-vswitchd on 2 cores, switches miss echo
        # replies and reconnect, and os-ken's LLDP loop can die on the churn (measured: a
        # 75-node mesh never finished discovery that way, and came up in 44 s this way).
        self._wait_switches()
        self._announce_hosts()
        self._start_agents()
        self._wait_agents()
        write_network_json(self)
        self._mark("ready")
        self.say(f"network {topo.name} up in {self.timings['ready']:.1f} s: "
                 f"{len(self.agents)} agents registered, LLDP topology matches the file; "
                 f"{self.network_json}")
        return self.network_json

    def _take_state_dir(self) -> None:
        """Hold the state dir for this run (refused, before any file is touched, while another
        launcher holds it); stop what a crashed earlier run of it left behind."""
        try:
            self.claim = rundir.claim(self.state_dir, "mininet")
        except rundir.StateDirInUse as exc:
            raise EmulationError(str(exc)) from None
        self._owned = True
        if self.claim.stop_crashed(self.say):
            cleanup_ours(self.plan.names(), say=self.say)

    def _build_pki(self) -> None:
        from mininet_topos.provision.pki import QUSEC_NAME, build_pki
        addrs: dict[str, list[str]] = {h.node: [h.ip, h.mgmt_ip, *self.plan.crossing_ips(h.node)]
                                       for h in self.plan.node_hosts}
        addrs[QUSEC_NAME] = [self.plan.mgmt_root_ip, "127.0.0.1"]   # agents; the launcher's own checks
        self.pki = build_pki(self.topology, self.state_dir / "pki", addrs)
        self._mark("pki")
        self.say(f"  PKI: CA and {len(self.pki.nodes)} node / {len(self.pki.saes)} SAE certificates "
                 f"({self.timings['pki']:.1f} s)")

    def _start_qusec(self) -> None:
        from mininet_topos.launch.controller import Controller
        from mininet_topos.provision import inventory
        # A fresh copy every start: an edit made through `qpolicy reload` lasts one run.
        self.policy_file.write_text(self.policy_src.read_text() if self.policy_src else DEFAULT_POLICY)
        # gRPC on every address, so agents reach it over the management bridge; OpenFlow on
        # loopback (the switches live in the root namespace).
        inv_file = self.state_dir / "inventory.toml"
        if self.inventory is not None:   # a domain's, with its [domain] and [[borders]]
            from quseccontroller.inventory import dumps
            inv_file.write_text(dumps(self.inventory, comment=f"QuSeC inventory of {self.inventory.source}"))
        else:
            inventory.write(self.topology, inv_file)
        self.controller = Controller(self.state_dir / "qusec", ca_cert=self.pki.ca_cert,
                                     cert=self.pki.qusec_cert, key=self.pki.qusec_key,
                                     policy=str(self.policy_file), inventory=inv_file,
                                     grpc_listen="0.0.0.0:0",
                                     http_listen="127.0.0.1:0", of_listen="127.0.0.1:0",
                                     of_tls=(self.switch_ca or self.pki.ca_cert, self.pki.qusec_cert,
                                             self.pki.qusec_key),
                                     parent=self.parent)
        self.controller.start()
        self.controller.wait_ready(60)
        self.operator = OperatorClient(self.controller.https_url, self.pki.ca_cert,
                                       self.pki.operator.cert, self.pki.operator.key)
        port = self.controller.grpc_addr.rpartition(":")[2]
        self.qusec = {"grpc": f"{self.plan.mgmt_root_ip}:{port}", "http": self.controller.http_url,
                      "https": self.controller.https_url, "grpc_local": self.controller.grpc_addr}
        self._mark("qusec")
        self.say(f"  QuSeC: OpenFlow 127.0.0.1:{self.controller.of_port}, gRPC {self.qusec['grpc']} "
                 f"(management network), HTTP {self.controller.http_url} ({self.timings['qusec']:.1f} s)")
        if self.controller.dashboard_url:
            self.say(f"  QuSeC dashboard (open in a browser on this machine): {self.controller.dashboard_url}")

    def _start_mininet(self) -> None:
        self.net = build_mininet(self.plan, self.datapath, (self.pki.switch.key, self.pki.switch.cert,
                                                            self.pki.ca_cert),
                                 {"c0": self.controller.of_port},
                                 arp_dir=self.state_dir / "arp" if self.static_arp else None)
        self._mark("mininet")
        self.say(f"  Mininet: {len(self.net.switches)} switches, {len(self.net.hosts)} hosts "
                 f"({self.timings['mininet']:.1f} s)")

    def own_hosts(self) -> list[Any]:
        """This network's vKMS and SAE hosts (a domain's, in a shared Mininet)."""
        return [self.net.get(h.name) for h in [*self.plan.node_hosts, *self.plan.sae_hosts]]

    def status(self, timeout: float = 5.0) -> dict:
        """QuSeC's /status (switches, LLDP links, core: nodes, links, paths, hosts, flows), read
        as the network's operator."""
        return self.operator.status(timeout=timeout)

    def _safe_status(self) -> dict:
        try:
            return self.status()
        except OSError:
            return {}

    def lldp_links(self, st: dict | None = None) -> set[frozenset[int]]:
        st = self._safe_status() if st is None else st
        return {frozenset(int(end[0]) for end in link) for link in st.get("links", [])}

    def _wait_switches(self) -> None:
        want_sw = sorted(s.dpid for s in self.plan.switches)
        want_links = self.plan.expected_switch_links()
        shown = [-1, -1]

        def ready() -> bool:
            st = self._safe_status()
            sw, links = [d for d in st.get("switches", []) if d in want_sw], self.lldp_links(st)
            if [len(sw), len(links & want_links)] != shown:
                shown[:] = [len(sw), len(links & want_links)]
                self.say(f"  switches connected {len(sw)}/{len(want_sw)}, "
                         f"LLDP links {len(links & want_links)}/{len(want_links)}")
            return sorted(sw) == want_sw and links == want_links

        wait_for(ready, self._remaining(), "every switch to connect to QuSeC and LLDP to find "
                 "every link of the file", interval=0.5)
        self._mark("topology")

    def _remaining(self) -> float:
        return max(1.0, self.ready_timeout - (time.monotonic() - self._t0))

    def _announce_hosts(self, rounds: int = 8, round_s: float = 2.0) -> None:
        """Every host sends one ARP (to an unused address), again every ``round_s`` until QuSeC
        has learned them all: QuSeC learns where each host is attached. (A round lost while the
        switches' base flows were still being installed used to cost a fixed 5 s wait.)"""
        hosts = self.own_hosts()
        want = len(hosts)
        learned = lambda: self._safe_status().get("core", {}).get("hosts", 0)  # noqa: E731
        for _ in range(rounds):
            procs = [h.popen(["ping", "-c", "1", "-W", "1", "10.0.255.254"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for h in hosts]
            try:
                wait_for(lambda: learned() >= want, round_s, "hosts learned", interval=0.2)
                break
            except EmulationError:
                continue
            finally:
                for proc in procs:
                    proc.wait(10)
        else:
            raise EmulationError(f"QuSeC learned {learned()} of {want} hosts after {rounds} rounds "
                                 f"of ARP; see {self.controller.log_file}")
        self._mark("hosts")
        self.say(f"  QuSeC located all {want} hosts ({self.timings['hosts']:.1f} s)")

    def _start_agents(self) -> None:
        from mininet_topos.provision.agents import configs_for_topology
        addrs = {h.node: h.ip for h in self.plan.node_hosts}
        self.fleet.write_configs(configs_for_topology(self.topology, self.pki, self.state_dir / "nodes",
                                                      addrs, qusec_addr=self.qusec["grpc"], ports=AGENT_PORTS),
                                 self.config_hook)
        self.fleet.spawn_all()
        self._mark("agents_started")
        self.say(f"  started {len(self.configs)} vKMS agents in their hosts "
                 f"({self.timings['agents_started']:.1f} s)")

    def _spawn_in_host(self, node_id: str, argv: list[str], env: dict[str, str],
                       logf: Any) -> subprocess.Popen:
        host = self.net.get(self.plan.node_host(node_id).name)
        return host.popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def _wait_agents(self, nodes: list[str] | None = None, timeout: float | None = None) -> None:
        restart = nodes is not None
        nodes = list(nodes or self.configs)
        total = len(nodes)
        shown = [-1]

        def ready() -> bool:
            try:
                self.fleet.poll(nodes)
            except AgentStartError as exc:
                raise EmulationError(str(exc)) from None
            online = self._safe_status().get("core", {}).get("nodes", {})
            registered = [n for n in nodes if online.get(n, {}).get("online")]
            serving = sum(1 for n in nodes if n in self.agents)
            if [serving + len(registered)] != shown:
                shown[:] = [serving + len(registered)]
                self.say(f"  agents serving {serving}/{total}, registered with QuSeC "
                         f"{len(registered)}/{total}")
            return serving == total and len(registered) == total

        wait_for(ready, timeout or self._remaining(), "every agent to serve and register with QuSeC "
                 f"(logs: {self.state_dir}/nodes/NODE/agent.log)", interval=0.3)
        if not restart:
            self._mark("agents")

    # -- operations ----------------------------------------------------------------------------
    @property
    def agent_logs(self) -> str:
        return f"{self.state_dir}/nodes/NODE/agent.log"

    def dead(self) -> list[str]:
        """Agents that exited on their own."""
        return self.fleet.dead()

    def network_of(self, _sae: str) -> Path:
        """The network.json an SAE's ``qkdnet key`` reads."""
        return self.network_json

    def host(self, name: str) -> Any:
        return self.net.get(name)

    def sae_call(self, sae: str, op: str, peer: str, *, number: int = 1, size: int | None = None,
                 key_ids: list[str] | None = None, fresh: bool = False,
                 timeout: float = SAE_CALL_TIMEOUT_S) -> dict:
        """Run an ETSI 014 call inside SAE ``sae``'s host: op 'enc' (peer = slave) or 'dec'
        (peer = master). Returns {"keys": [{key_ID, sha256, size, extension}]} or {"error": ...}.
        ``fresh``: ask for security level qkd explicitly, so the key is relayed now (not taken
        from a pre-relayed buffer) over the path QuSeC grants now."""
        h = self.plan.sae_host(sae)
        host = self.net.get(h.name)
        return sae_call(lambda argv: host.popen(argv), op, self.agents[h.node]["etsi014_url"],
                        self.pki.ca_cert, self.pki.saes[sae].cert, self.pki.saes[sae].key, peer,
                        number=number, size=size, key_ids=key_ids, fresh=fresh, kme_node=h.node,
                        timeout=timeout)

    def key_pair(self, master: str, slave: str, number: int = 1, size: int | None = None,
                 fresh: bool = False) -> dict:
        """enc_keys in the master SAE's host, dec_keys in the slave's; digests compared."""
        return check_pair(master, slave, number,
                          lambda: seen(self.sae_call(master, "enc", slave, number=number, size=size,
                                                     fresh=fresh)),
                          lambda ids: seen(self.sae_call(slave, "dec", master, key_ids=ids)))

    def switch_name(self, node: str) -> str:
        return self.plan.switch_of(node).name

    def dump_flows(self, node: str) -> list[str]:
        out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.switch_name(node)],
                             capture_output=True, text=True, check=False).stdout
        return [l.strip() for l in out.splitlines() if "priority=" in l]

    def relay_flows(self, node: str) -> list[str]:
        return [l for l in self.dump_flows(node) if f"priority={RELAY_FLOW_PRIORITY}" in l]

    def relay_route(self, src: str, dst: str) -> list[str] | None:
        """The switches (as node ids) relay traffic src -> dst crosses, by following QuSeC's
        relay flows hop by hop from src's switch; None when they do not lead to dst's host."""
        ip_src, ip_dst = self.plan.node_host(src).ip, self.plan.node_host(dst).ip
        match = f"nw_src={ip_src},nw_dst={ip_dst},tp_dst={AGENT_PORTS['relay']}"
        node_of = {s.name: s.node for s in self.plan.switches}
        node, route = src, [src]
        for _ in range(len(self.plan.switches) + 1):
            line = next((l for l in self.relay_flows(node) if match in l), None)
            if line is None or "output:" not in line:
                return None
            port = int(line.rsplit("output:", 1)[1].split(",")[0])
            intf = self.net.get(self.switch_name(node)).intfs.get(port)
            if intf is None or intf.link is None:
                return None
            other = intf.link.intf2 if intf.link.intf1 is intf else intf.link.intf1
            if other.node.name == self.plan.node_host(dst).name:
                return route
            node = node_of.get(other.node.name)
            if node is None or node in route:
                return None
            route.append(node)
        return None

    def set_link(self, node_a: str, node_b: str, up: bool) -> None:
        """Take the classical link between two nodes' switches down (or up again)."""
        self.net.configLinkStatus(self.switch_name(node_a), self.switch_name(node_b),
                                  "up" if up else "down")

    def restart_agent(self, node_id: str, *, kill: bool = True, timeout: float = 60.0) -> dict:
        """Kill -9 (or SIGTERM) one agent and start it again on its state dir; its new agent.json."""
        self.respawn_agent(node_id, kill=kill)
        self._wait_agents([node_id], timeout)
        write_network_json(self)
        return self.agents[node_id]

    def reload_policy(self, source: str | Path | None = None, timeout: float = 15.0) -> str:
        """Install ``source`` (or re-read the current file) as QuSeC's policy; the policy's source."""
        from quseccontroller.policy import load as load_policy
        if source is not None:
            text = Path(source).read_text()
            load_policy(source)   # PolicyError names the file and rule before anything changes
            self.policy_file.write_text(text)
        else:
            load_policy(self.policy_file)
        before = self.controller_log_size()
        st = os.stat(self.policy_file)
        os.utime(self.policy_file, ns=(st.st_atime_ns, max(st.st_mtime_ns, time.time_ns()) + 1_000_000))
        wait_for(lambda: "policy reloaded" in self.controller_log_since(before), timeout,
                 f"QuSeC to reload {self.policy_file}")
        return str(self.policy_file)

    def controller_log_size(self) -> int:
        try:
            return self.controller.log_file.stat().st_size
        except OSError:
            return 0

    def controller_log_since(self, offset: int) -> str:
        try:
            with open(self.controller.log_file, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # -- shutdown ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop agents, Mininet and QuSeC. Each step runs even when an earlier one failed
        (a failing step is logged; the first such error is raised once all have run)."""
        step = Steps()

        step("stopping the agents", self.fleet.stop)
        self.procs.clear()
        if self.net is not None and not self.shared:
            step("stopping Mininet", lambda: stop_mininet(self.net, self.cleanup))
        self.net = None
        if self._owned:
            from mininet_topos.launch import ovs
            step("clearing OpenFlow TLS", ovs.del_ssl)
        if self.controller is not None:
            step("stopping QuSeC", self.controller.stop)
            self.controller = None
        if self.claim is not None:
            self.claim.release()
            self.claim = None
        step.raise_first()

    def cleanup(self) -> None:
        """After a failure: remove what this network may have left (ours only, see launch/clean.py);
        nothing when it never held its state dir (another live run's network is not ours)."""
        if not self._owned:
            return
        cleanup_ours(self.plan.names(), say=log.warning)


def build_mininet(p: EmulationPlan, datapath: str, switch_tls: tuple[str, str, str],
                  controllers: dict[str, int], controller_of: dict[str, str] | None = None,
                  arp_dir: Path | None = None) -> Any:
    """The Mininet of plan ``p``, built and started: OVS bridges on ``datapath`` speaking OpenFlow
    over TLS (``switch_tls``: the switches' key, certificate and the CA file their controllers'
    certificates chain to) to ``controllers`` (Mininet name -> OpenFlow port on 127.0.0.1), each
    switch to ``controller_of[switch name]`` (default: every controller); TX checksum offload off
    on the userspace datapath; with ``arp_dir``, static ARP entries."""
    from mininet.net import Mininet

    from mininet_topos.launch import ovs
    from mininet_topos.launch.topos import DomainSwitch
    own = controller_of or {}

    def switch(name: str, **kw: Any) -> Any:
        # batch: one ovs-vsctl call configures every bridge at net.start() (Mininet only
        # sets it for switch classes, not factories; one call per bridge took 8 s at 75).
        kw.setdefault("batch", True)
        return DomainSwitch(name, controller=own.get(name), datapath=datapath, protocols="OpenFlow13", **kw)

    net = Mininet(topo=QkdTopo(p), switch=switch, controller=None, build=False,
                  autoSetMacs=False, waitConnected=False)
    # OpenFlow over TLS: every bridge connects with the switch certificate and accepts only a
    # controller the CA file signed (docs/security.md).
    key, cert, ca = switch_tls
    ovs.set_ssl(key, cert, ca)
    for name, port in controllers.items():
        net.addController(name, controller=QuSeCRemote, protocol="ssl", ip="127.0.0.1", port=port)
    net.build()
    net.start()
    ovs.set_inactivity_probe([f"ssl:127.0.0.1:{port}" for port in controllers.values()])
    if datapath == "user":
        try:
            tx_checksum_off(net.hosts)
        except RuntimeError as exc:
            raise EmulationError(str(exc)) from None
    if arp_dir is not None:
        static_arp(net.hosts, arp_dir)
    return net


def static_arp(hosts: list[Any], arp_dir: Path) -> None:
    """Permanent neighbour entries for every data-plane host in every host (``mn --arp``).

    With dynamic ARP the first relay connection on a large mesh sometimes failed with
    EHOSTUNREACH while broadcasts crossed dozens of userspace switches; addresses here are
    fixed, so the emulation fills the tables up front (one ``ip -batch`` per host; the hosts'
    other links, management and crossings, keep dynamic ARP).
    """
    arp_dir.mkdir(parents=True, exist_ok=True)
    entries = [(h.IP(), h.MAC()) for h in hosts]
    procs = []
    for h in hosts:
        batch = arp_dir / f"{h.name}.batch"
        dev = h.defaultIntf().name
        batch.write_text("".join(f"neigh replace {ip} lladdr {mac} dev {dev} nud permanent\n"
                                 for ip, mac in entries if ip != h.IP()))
        procs.append(h.popen(["ip", "-batch", str(batch)]))
    for proc in procs:
        _, err = proc.communicate(timeout=30)
        if proc.returncode:
            raise EmulationError(f"static ARP entries failed: {err.decode(errors='replace')}")


def stop_mininet(net: Any, cleanup: Callable[[], None]) -> None:
    """Stop a Mininet (``cleanup()`` when that fails: a half-built net)."""
    try:
        deleting = _delete_links(net)      # the kernel deletes veths while OVS drops bridges
        net.stop()
        if deleting is not None:
            err = deleting.stderr.read()
            if deleting.wait(120):
                log.warning("ip -batch link del: %s", err.strip()[-500:])
            deleting.stderr.close()
    except Exception:  # noqa: BLE001 - a half-built net is cleaned below
        log.exception("net.stop failed; removing our bridges, veths and host shells")
        cleanup()


def _delete_links(net: Any) -> subprocess.Popen | None:
    """Start deleting every veth pair in one ``ip -batch`` from its root-namespace end and drop
    them from Mininet's list (its net.stop does two shell round trips per link: 8 s of a 15 s
    stop at 75 nodes). Returns the running ``ip`` to wait for."""
    ends = []
    for link in net.links:
        root_end = next((i for i in (link.intf1, link.intf2) if not i.node.inNamespace), None)
        if root_end is not None:
            ends.append((link, root_end.name))
    if not ends:
        return None
    proc = subprocess.Popen(["ip", "-force", "-batch", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc.stdin.write("".join(f"link del {n}\n" for _, n in ends))
    proc.stdin.close()
    gone = {link for link, _ in ends}
    net.links = [l for l in net.links if l not in gone]
    return proc


def write_network_json(net: MininetNetwork) -> Path:
    from mininet_topos.provision.netinfo import write_network_json as write
    def pid(name: str) -> int | None:
        return getattr(net.net.get(name), "pid", None) if net.net is not None else None

    # Host pids let a root shell run a command inside a host: mnexec -a PID CMD.
    hosts = {"nodes": {h.node: {"host": h.name, "pid": pid(h.name), "switch": h.switch, "ip": h.ip,
                                "mgmt_ip": h.mgmt_ip} for h in net.plan.node_hosts},
             "saes": {h.sae: {"host": h.name, "pid": pid(h.name), "switch": h.switch, "ip": h.ip}
                      for h in net.plan.sae_hosts}}
    return write(net.network_json, net.topology, net.pki, net.agents,
                 {k: net.qusec[k] for k in ("grpc", "http", "https")},
                 mode="mininet", datapath=net.datapath, mininet=hosts, policy=str(net.policy_file))
