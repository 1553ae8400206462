"""``qkdnet up FILE`` for a multi-domain topology: every domain in one Mininet, under a parent controller.

One Mininet holds every domain's switches and hosts (``plan(topology)``: names, DPIDs and
addresses unique across domains). Each domain is a ``MininetNetwork`` of its part of the plan
(``shared``): its own PKI, its own QuSeC (``osken-manager`` + gateway, its own OpenFlow port,
inventory with the domain's borders, policy and parent link) under ``DIR/domains/NAME``, its
switches connected to that QuSeC only (``topos.DomainSwitch``). No switch link joins two
domains. The parent controller runs as for ``--local`` (``DIR/parent``).

Crossings (``plan.CrossingPlan``): each interworking site is a direct link between its two KME
hosts on a subnet of its own (``10.1.I.0/24``), which no switch forwards; the KMEs' ETSI GS QKD
020 servers listen there (port 8020 in their hosts) and their node certificates carry that
address. Each PQC link is such a link between its two end hosts (the WAN): their PQC link servers
(``[pqc]``, port 7100) listen there.

OpenFlow TLS: one Open vSwitch holds every domain's bridges and has one SSL configuration, so the
switches share one certificate, of role switch, from a CA of the emulation host's switches
(``DIR/switches``); each QuSeC accepts switches of that CA only, and the bridges accept a
controller of any domain's CA (each bridge has its one controller target).

``DIR/network.json`` has the shape of ``--local``'s (``launch/domains.py``) with ``mode:
"mininet"``, the crossings' addresses and every host's pid; each domain's own network.json is
an ordinary Mininet network.json (``qkdnet status --network``, ``qkdnet key`` inside a domain).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, TextIO

from mininet_topos.launch import rundir
from mininet_topos.launch.clean import cleanup_ours
from mininet_topos.launch.domains import Federated
from mininet_topos.launch.fleet import Steps
from mininet_topos.launch.keypair import check_pair, seen
from mininet_topos.launch.lock import EmulationError
from mininet_topos.launch.mininet import (READY_TIMEOUT_S, MininetNetwork, build_mininet, stop_mininet,
                                          write_network_json)
from mininet_topos.launch.plan import plan
from mininet_topos.model import Topology
from mininet_topos.provision import interworking
from mininet_topos.provision.inventory import build_domain
from mininet_topos.provision.pki import SWITCH_NAME, issue_pair, new_ca

log = logging.getLogger(__name__)

ETSI020_PORT = 8020        # every KME host has its own namespace: a fixed port on its site address
PQC_PORT = 7100            # a PQC link's end: its link server on its WAN address


class MininetDomains(Federated):
    """Every domain of ``topology`` in one Mininet, each under its own QuSeC, and the parent."""

    mode = "mininet"

    def __init__(self, topology: Topology, state_dir: str | Path, *, datapath: str | None = None,
                 policy: str | Path | None = None, progress: TextIO | None = None,
                 interval_s: float = 2.0, ready_timeout: float = 2 * READY_TIMEOUT_S) -> None:
        super().__init__(topology, state_dir, progress=progress, policy=policy, interval_s=interval_s)
        self.plan = plan(topology)
        self.datapath = datapath
        self.ready_timeout = ready_timeout
        self.net: Any = None
        self.timings: dict[str, float] = {}
        self._owned = False
        self._t0 = 0.0

    def say(self, msg: str) -> None:
        self._say(msg)

    def _mark(self, phase: str) -> None:
        self.timings[phase] = round(time.monotonic() - self._t0, 3)

    def start(self) -> Path:
        from mininet_topos.launch import ovs
        self._t0 = time.monotonic()
        ovs.ensure_running()
        self.datapath = self.datapath or ovs.datapath()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.claim = rundir.claim(self.state_dir, "mininet")
        except rundir.StateDirInUse as exc:
            raise EmulationError(str(exc)) from None
        self._owned = True
        if self.claim.stop_crashed(self._say):
            cleanup_ours(self.plan.names(), say=self._say)
        topo, p = self.topology, self.plan
        self._say(f"{topo.name}: {len(topo.domains)} domains in one Mininet: {len(p.switches)} switches, "
                  f"{len(p.node_hosts)} vKMS hosts, {len(p.sae_hosts)} SAE hosts, {len(p.crossings)} "
                  f"crossing links (OVS {self.datapath} datapath); state in {self.state_dir}")
        self._start_parent()
        switch = self._switch_pki()
        for dom in topo.domains:
            nodes = set(topo.domain_view(dom).nodes)
            part = MininetNetwork(topo.domain_view(dom), self.state_dir / "domains" / dom,
                                  datapath=self.datapath, policy=self.policy, progress=self.progress,
                                  ready_timeout=self.ready_timeout,
                                  emulation_plan=p.part(nodes, f"{topo.name}-{dom}"), shared=True,
                                  inventory=build_domain(topo, dom), parent=self.parent_link(dom),
                                  config_hook=self._interworking_kme, switch_ca=switch[2])
            part._t0 = self._t0
            self.domains[dom] = part
            part.state_dir.mkdir(parents=True, exist_ok=True)
            part._build_pki()
        site_ip = {node: c.ip_of(node) for c in p.crossings if c.kind == "etsi020"
                   for node in (c.node_a, c.node_b)}
        self.etsi020 = interworking.etsi020_tables(topo, lambda node: f"{site_ip[node]}:{ETSI020_PORT}",
                                                   lambda dom: self.domains[dom].pki.ca_cert)
        wan_ip = {node: c.ip_of(node) for c in p.crossings if c.kind == "pqc" for node in (c.node_a, c.node_b)}
        self.pqc = interworking.pqc_tables(topo, lambda node: f"{wan_ip[node]}:{PQC_PORT}",
                                           lambda dom: self.domains[dom].pki.ca_cert)
        for i, (dom, part) in enumerate(self.domains.items(), 1):
            self._say(f"[{i}/{len(self.domains)}] domain {dom}: QuSeC")
            part._start_qusec()
        ctl = {dom: f"c{i}" for i, dom in enumerate(self.domains)}
        bundle = self.state_dir / "switches" / "controller-cas.pem"
        bundle.write_text("".join(Path(part.pki.ca_cert).read_text() for part in self.domains.values()))
        self.net = build_mininet(p, self.datapath, (switch[0], switch[1], str(bundle)),
                                 {ctl[d]: part.controller.of_port for d, part in self.domains.items()},
                                 {s.name: ctl[d] for d, part in self.domains.items() for s in part.plan.switches},
                                 arp_dir=self.state_dir / "arp")
        self._mark("mininet")
        self._say(f"  Mininet: {len(self.net.switches)} switches, {len(self.net.hosts)} hosts "
                  f"({self.timings['mininet']:.1f} s)")
        for dom, part in self.domains.items():
            part.net = self.net
            self._say(f"  domain {dom}:")
            part._wait_switches()
            part._announce_hosts()
        for part in self.domains.values():
            part._start_agents()
        for dom, part in self.domains.items():
            self._say(f"  domain {dom}:")
            part._wait_agents()
            write_network_json(part)
        self._write_network_json(datapath=self.datapath, crossings=self._crossings_doc(),
                                 mininet=self._hosts_doc())
        self._mark("ready")
        self._say(f"network {topo.name} up in {self.timings['ready']:.1f} s: {len(self.domains)} domains, "
                  f"{sum(len(d.agents) for d in self.domains.values())} agents registered; {self.network_json}")
        return self.network_json

    def _switch_pki(self) -> tuple[str, str, str]:
        """The switches' key, certificate and CA file (one Open vSwitch holds every domain's bridges)."""
        out = self.state_dir / "switches"
        out.mkdir(parents=True, exist_ok=True)
        ca_key, ca_name = new_ca(f"QuSeC emulation switches ({self.topology.name})", out)
        pair = issue_pair(ca_key, ca_name, "switch", SWITCH_NAME, out)
        return pair.key, pair.cert, str(out / "ca.pem")

    def _crossings_doc(self) -> dict:
        return {c.id: {"kind": c.kind, "subnet": f"{c.ip_a.rpartition('.')[0]}.0/{c.prefixlen}",
                       "ends": {c.node_a: c.ip_a, c.node_b: c.ip_b}} for c in self.plan.crossings}

    def _hosts_doc(self) -> dict:
        def pid(name: str) -> int | None:
            return getattr(self.net.get(name), "pid", None)
        return {"nodes": {h.node: {"host": h.name, "pid": pid(h.name), "ip": h.ip, "mgmt_ip": h.mgmt_ip,
                                   "domain": self.topology.nodes[h.node].domain}
                          for h in self.plan.node_hosts},
                "saes": {h.sae: {"host": h.name, "pid": pid(h.name), "ip": h.ip,
                                 "domain": self.topology.nodes[h.node].domain}
                         for h in self.plan.sae_hosts}}

    # -- what the Mininet CLI and the demo ask of a network ------------------------------------
    def domain_of_node(self, node: str) -> MininetNetwork:
        return self.domains[self.topology.nodes[node].domain]

    def key_pair(self, master: str, slave: str, number: int = 1, size: int | None = None,
                 fresh: bool = False) -> dict:
        """enc_keys in the master SAE's host, dec_keys in the slave's (each with its domain's PKI)."""
        m, s = self.domain_of_sae(master), self.domain_of_sae(slave)
        return check_pair(master, slave, number,
                          lambda: seen(m.sae_call(master, "enc", slave, number=number, size=size, fresh=fresh)),
                          lambda ids: seen(s.sae_call(slave, "dec", master, key_ids=ids)))

    def status(self, timeout: float = 5.0) -> dict:
        """Every domain's QuSeC /status merged (nodes, links, paths, switches: ids are unique
        across domains; paths are named DOMAIN/ID); a domain not answering is left out."""
        core: dict[str, Any] = {"nodes": {}, "links": {}, "paths": {}, "hosts": 0}
        out: dict[str, Any] = {"switches": [], "links": [], "core": core, "domains": {}}
        for dom, part in self.domains.items():
            try:
                st = part.status(timeout=timeout)
            except OSError:
                out["domains"][dom] = {"ok": False}
                continue
            out["domains"][dom] = {"ok": True, "parent": st.get("parent", {})}
            out["switches"] += st.get("switches", [])
            out["links"] += st.get("links", [])
            c = st.get("core", {})
            core["nodes"].update(c.get("nodes", {}))
            core["links"].update(c.get("links", {}))
            core["paths"].update({f"{dom}/{k}": v for k, v in c.get("paths", {}).items()})
            core["hosts"] += int(c.get("hosts", 0) or 0)
        return out

    @property
    def agent_logs(self) -> str:
        return f"{self.state_dir}/domains/DOMAIN/nodes/NODE/agent.log"

    def network_of(self, sae: str) -> Path:
        """The network.json of ``sae``'s domain (what ``qkdnet key`` reads inside a domain)."""
        return self.domain_of_sae(sae).network_json

    def switch_name(self, node: str) -> str:
        return self.plan.switch_of(node).name

    def set_link(self, node_a: str, node_b: str, up: bool) -> None:
        self.domain_of_node(node_a).set_link(node_a, node_b, up)

    def reload_policy(self, source: str | Path | None = None, timeout: float = 15.0) -> str:
        """Every domain's QuSeC takes ``source`` (or re-reads its own policy file)."""
        return ", ".join(part.reload_policy(source, timeout) for part in self.domains.values())

    # -- shutdown ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Agents, Mininet, the switches' TLS, every QuSeC, the parent; each step runs even when
        an earlier one failed (the first error is raised once all have run)."""
        step = Steps()

        for part in self.domains.values():
            step("stopping the agents", part.fleet.stop)
        if self.net is not None:
            step("stopping Mininet", lambda: stop_mininet(self.net, self.cleanup))
            self.net = None
        if self._owned:
            from mininet_topos.launch import ovs
            step("clearing OpenFlow TLS", ovs.del_ssl)
        for part in self.domains.values():
            step("stopping a domain's QuSeC", part.stop)
        if self.parent is not None:
            step("stopping the parent", self.parent.stop)
        if self.claim is not None:
            self.claim.release()
            self.claim = None
        step.raise_first()

    def cleanup(self) -> None:
        """After a failure: remove what this network may have left (ours only)."""
        if self._owned:
            cleanup_ours(self.plan.names(), say=log.warning)

