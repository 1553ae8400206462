"""QuSeC os-ken app: a thin shim between OpenFlow/LLDP events, the pure core and the gateway.

Load it with ``osken-manager [--observe-links] [--config-file qusec.conf] quseccontroller.app``.
Like Faucet's ``faucet.py``, every handler only translates: it calls a ``QuSeCCore`` method
with ``now=time.time()`` and executes the returned actions (FlowMods are bound to the
datapath at send time and confirmed with a barrier; Authorise/Revoke go to the gateway).
This process never imports grpc (it would freeze the eventlet hub, DESIGN.md §5): the gRPC
API is served by ``quseccontroller.gateway``, which this app starts and restarts, reached
over the Unix socket of ``quseccontroller.bridge``.
"""
from __future__ import annotations

import copy
import logging
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from os_ken import cfg
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER,
                                       set_ev_cls)
from os_ken.lib import hub
from os_ken.lib.packet import arp, ethernet, ether_types, ipv4, packet
from os_ken.ofproto import ofproto_v1_3
from os_ken.topology import event as topo_event

from quseccontroller import lldpfix, settings
from quseccontroller.actions import Authorise, FlowMods, PathRequest, RelayAuthorisation, Revoke
from quseccontroller.bridge import AppBridgeServer, BridgeError
from quseccontroller.core import QuSeCCore
from quseccontroller.policy import PolicyError, PolicyTable, default_table
from quseccontroller.policy import load as load_policy
from quseccontroller.state import AgentInfo, LinkState

LOG = logging.getLogger(__name__)
lldpfix.install()  # before os_ken.topology starts its link-expiry thread

CONF = cfg.CONF
# Options of the [qusec] group; osken-manager parses the command line before it imports
# apps, so they are set in a config file (--config-file) rather than as new CLI flags.
OPTS = [
    cfg.StrOpt("state_dir", default=settings.STATE_DIR,
               help="directory for the bridge socket, gateway log and ready file"),
    cfg.StrOpt("policy", default="", help="policy TOML file (empty: allow all, one key-aware path)"),
    cfg.StrOpt("gateway", default=settings.GATEWAY_MODE, choices=["spawn", "standalone"],
               help="spawn: start and supervise the gRPC gateway; standalone: it is run separately"),
    cfg.StrOpt("grpc_listen", default=settings.GRPC_LISTEN, help="gateway gRPC host:port"),
    cfg.StrOpt("http_listen", default=settings.HTTP_LISTEN, help="gateway HTTP host:port"),
    cfg.StrOpt("ca_cert", default="", help="CA certificate agents' client certificates chain to"),
    cfg.StrOpt("cert", default="", help="gateway server certificate (PEM)"),
    cfg.StrOpt("key", default="", help="gateway server private key (PEM)"),
    cfg.StrOpt("bridge_socket", default="", help="Unix socket to the gateway (default: in state_dir)"),
    cfg.FloatOpt("path_ttl", default=settings.PATH_TTL_S, help="relay authorisation lifetime (s)"),
    cfg.FloatOpt("expire_interval", default=settings.EXPIRE_INTERVAL_S, help="expiry sweep period (s)"),
    cfg.FloatOpt("barrier_timeout", default=settings.BARRIER_TIMEOUT_S,
                 help="seconds every switch whose flows a request changed has to confirm them "
                      "with a barrier reply; a switch that does not fails the request"),
    cfg.FloatOpt("gone_grace", default=settings.GONE_GRACE_S,
                 help="seconds before a node with a lost control stream is marked gone"),
    cfg.IntOpt("parent_pid", default=0,
               help="exit when this process (a launcher) is gone; 0: run until stopped"),
]
CONF.register_opts(OPTS, group="qusec")

_LINK_STATUS = {"UNSPECIFIED", "ACTIVE", "PASSIVE", "OFF"}


@dataclass(frozen=True)
class AppConfig:
    """The [qusec] options, resolved."""
    state_dir: Path
    policy: str
    gateway: str
    grpc_listen: str
    http_listen: str
    ca_cert: str
    cert: str
    key: str
    bridge_socket: str
    path_ttl: float
    expire_interval: float
    gone_grace: float
    parent_pid: int = 0
    barrier_timeout: float = settings.BARRIER_TIMEOUT_S

    @classmethod
    def from_conf(cls, conf: Any = None) -> "AppConfig":
        q = (conf or CONF).qusec
        state_dir = Path(q.state_dir).resolve()
        return cls(state_dir=state_dir, policy=q.policy or "", gateway=q.gateway,
                   grpc_listen=q.grpc_listen, http_listen=q.http_listen, ca_cert=q.ca_cert,
                   cert=q.cert, key=q.key,
                   bridge_socket=q.bridge_socket or settings.bridge_socket_path(state_dir),
                   path_ttl=q.path_ttl, expire_interval=q.expire_interval, gone_grace=q.gone_grace,
                   parent_pid=q.parent_pid, barrier_timeout=q.barrier_timeout)

    def gateway_argv(self) -> list[str]:
        """Command line of the companion gateway process."""
        argv = [settings.python(), "-m", "quseccontroller.gateway",
                "--bridge", self.bridge_socket, "--grpc-listen", self.grpc_listen,
                "--http-listen", self.http_listen, "--state-dir", str(self.state_dir),
                "--gone-grace", str(self.gone_grace), "--parent-pid", str(os.getpid())]
        for flag, value in (("--ca-cert", self.ca_cert), ("--cert", self.cert), ("--key", self.key)):
            if value:
                argv += [flag, value]
        return argv


# ------------------------------------------------------------------ wire <-> core dataclasses


def _str(args: dict, name: str, required: bool = False) -> str:
    value = args.get(name, "")
    if not isinstance(value, str):
        raise BridgeError("invalid", f"{name}: expected a string, got {type(value).__name__}",
                          {"field": name})
    if required and not value:
        raise BridgeError("invalid", f"{name}: required", {"field": name})
    return value


def _int(args: dict, name: str, default: int = 0) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BridgeError("invalid", f"{name}: expected a non-negative number, got {value!r}",
                          {"field": name})
    return int(value)


def link_state_from_wire(d: dict) -> LinkState:
    status = str(d.get("status", "ACTIVE")).upper().removeprefix("LINK_STATUS_")
    if status not in _LINK_STATUS:
        raise BridgeError("invalid", f"links: status {d.get('status')!r} unknown", {"field": "status"})
    return LinkState(link_id=_str(d, "link_id", True), peer_node=_str(d, "peer_node", True),
                     skr_bps=float(d.get("skr_bps", 0.0)), stored_bits=_int(d, "stored_bits"),
                     consumption_bps=float(d.get("consumption_bps", 0.0)), status=status,
                     kms_kind=_str(d, "kms_kind") or "simulated")


def agent_info_from_wire(d: dict) -> AgentInfo:
    links = d.get("links", [])
    saes = d.get("saes", [])
    if not isinstance(links, list) or not isinstance(saes, list):
        raise BridgeError("invalid", "links and saes must be lists")
    return AgentInfo(node_id=_str(d, "node_id", True), relay_addr=_str(d, "relay_addr"),
                     etsi014_url=_str(d, "etsi014_url"), etsi004_addr=_str(d, "etsi004_addr"),
                     data_ip=_str(d, "data_ip"), trust_level=_int(d, "trust_level", 3) or 3,
                     links=tuple(link_state_from_wire(x) for x in links),
                     saes=tuple(str(s) for s in saes), agent_version=_str(d, "agent_version"))


def path_request_from_wire(d: dict) -> PathRequest:
    return PathRequest(src_node=_str(d, "src_node", True), dst_node=_str(d, "dst_node", True),
                       src_sae=_str(d, "src_sae"), dst_sae=_str(d, "dst_sae"),
                       key_size_bits=_int(d, "key_size_bits", 256) or 256,
                       key_count=_int(d, "key_count", 1) or 1,
                       application=_str(d, "application"))


def auth_to_wire(auth: RelayAuthorisation) -> dict:
    return asdict(auth)


def relay_addrs(auths: Iterable[RelayAuthorisation]) -> dict[str, str]:
    """Node -> relay host:port, as the authorisations of a path name their neighbours."""
    out: dict[str, str] = {}
    for a in auths:
        if a.prev_hop and a.prev_hop_addr:
            out[a.prev_hop] = a.prev_hop_addr
        if a.next_hop and a.next_hop_addr:
            out[a.next_hop] = a.next_hop_addr
    return out


# ---------------------------------------------------------------------------------- the app


class _Barrier:
    __slots__ = ("event", "error")

    def __init__(self) -> None:
        self.event = hub.Event()
        self.error = ""


class QuSeCApp(app_manager.OSKenApp):
    """Feeds OpenFlow, LLDP topology and gateway events to QuSeCCore; executes its actions."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cfg = AppConfig.from_conf()
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.policy_mtime = 0.0
        self.core = QuSeCCore(self._initial_policy(), path_ttl_s=self.cfg.path_ttl)
        self.datapaths: dict[int, Any] = {}
        self.switches_up: set[int] = set()
        self.links: set[frozenset] = set()          # undirected LLDP links, by their two ends
        self.barriers: dict[tuple[int, int], _Barrier] = {}
        self.flows_installed = 0
        self.bridge = AppBridgeServer(self.cfg.bridge_socket, self.handle_bridge)
        self.gateway_proc: subprocess.Popen | None = None
        self.gateway_restarts = 0
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------
    def _initial_policy(self) -> PolicyTable:
        if not self.cfg.policy:
            return default_table()
        table = load_policy(self.cfg.policy)  # a bad file at start-up is fatal, with its problems
        self.policy_mtime = os.stat(self.cfg.policy).st_mtime
        return table

    def start(self) -> Any:
        thread = super().start()
        self.bridge.start()
        self.threads.append(hub.spawn(self._expire_loop))
        if self.cfg.gateway == "spawn" and not (self.cfg.ca_cert and self.cfg.cert and self.cfg.key):
            # Mutual TLS is not optional: say so once instead of restarting a failing gateway.
            LOG.error("gRPC gateway NOT started: set ca_cert, cert and key in the [qusec] section "
                      "of the --config-file (OpenFlow keeps running; see docs/controller.md)")
        elif self.cfg.gateway == "spawn":
            self.threads.append(hub.spawn(self._supervise_gateway))
        LOG.info("QuSeC app started: state_dir=%s gateway=%s bridge=%s",
                 self.cfg.state_dir, self.cfg.gateway, self.cfg.bridge_socket)
        return thread

    def close(self) -> None:
        self._stopping = True
        proc = self.gateway_proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            for _ in range(50):
                if proc.poll() is not None:
                    break
                hub.sleep(0.1)
            else:
                proc.kill()
        self.bridge.close()
        super().close()

    def _supervise_gateway(self) -> None:
        """Run the gRPC gateway; restart it with a doubling back-off when it exits."""
        backoff = settings.GATEWAY_RESTART_MIN_S
        log_path = self.cfg.state_dir / settings.GATEWAY_LOG
        while not self._stopping:
            with open(log_path, "ab") as log:
                self.gateway_proc = subprocess.Popen(self.cfg.gateway_argv(), stdout=log,
                                                     stderr=subprocess.STDOUT,
                                                     stdin=subprocess.DEVNULL)
            started = time.monotonic()
            LOG.info("gateway started (pid %d), log %s", self.gateway_proc.pid, log_path)
            while self.gateway_proc.poll() is None and not self._stopping:
                hub.sleep(0.2)
            if self._stopping:
                return
            LOG.warning("gateway exited with %s; restarting in %.1fs",
                        self.gateway_proc.returncode, backoff)
            self.gateway_restarts += 1
            if time.monotonic() - started > 30:
                backoff = settings.GATEWAY_RESTART_MIN_S
            hub.sleep(backoff)
            backoff = min(backoff * 2, settings.GATEWAY_RESTART_MAX_S)

    def _expire_loop(self) -> None:
        while not self._stopping:
            hub.sleep(self.cfg.expire_interval)
            if self.cfg.parent_pid and os.getppid() != self.cfg.parent_pid:
                # The launcher died without stopping us: do not linger on a shared machine.
                LOG.warning("launcher (pid %d) is gone; exiting", self.cfg.parent_pid)
                self.close()
                os._exit(0)
            try:
                self.execute(self.core.expire(time.time()))
                self._maybe_reload_policy()
            except Exception:  # noqa: BLE001 - the sweep must keep running
                LOG.exception("expiry sweep failed")

    def _maybe_reload_policy(self) -> None:
        if not self.cfg.policy:
            return
        try:
            mtime = os.stat(self.cfg.policy).st_mtime
        except OSError as exc:
            LOG.warning("policy file %s: %s (old table stays in force)", self.cfg.policy, exc)
            return
        if mtime == self.policy_mtime:
            return
        self.policy_mtime = mtime
        try:
            table = load_policy(self.cfg.policy)
        except PolicyError as exc:
            LOG.error("policy reload rejected, old table stays in force: %s", "; ".join(exc.problems))
            return
        self.execute(self.core.reload_policy(table) or [])
        LOG.info("policy reloaded from %s (%d rules)", self.cfg.policy, len(table.rules))

    # -- sending -----------------------------------------------------------------------------
    def execute(self, actions: Iterable[Any], *, push_auth: bool = True, strict: bool = False,
                confirm: bool = True) -> tuple[int, list[Authorise]]:
        """Send FlowMods (then barrier every touched switch), push Authorise/Revoke.

        Returns (flow-adds sent, authorisations held back when ``push_auth`` is False).
        ``strict``: a missing switch or a failed barrier raises BridgeError. ``confirm=False``
        sends the barriers without waiting: OpenFlow event handlers must use it, because the
        barrier replies arrive through the very event loop they run on.
        """
        touched: dict[int, Any] = {}   # switches whose flows change: only these get a barrier
        held: list[Authorise] = []
        adds = 0
        for action in actions or ():
            if isinstance(action, FlowMods):
                dp = self.datapaths.get(action.dpid)
                if dp is None:
                    msg = f"switch {action.dpid:016x} is not connected"
                    if strict:
                        raise BridgeError("unavailable", msg, {"dpid": action.dpid})
                    LOG.warning("%s; %d messages dropped", msg, len(action.msgs))
                    continue
                flow_mods = 0
                for msg in action.msgs:
                    adds += self._send_bound(dp, msg)
                    flow_mods += type(msg).__name__ == "OFPFlowMod"
                if flow_mods:   # packet-outs alone (ARP probes) change no flow: no barrier
                    touched[action.dpid] = dp
            elif isinstance(action, Authorise):
                if push_auth:
                    self.bridge.push("authorise", {"node_id": action.node_id,
                                                   "auth": auth_to_wire(action.auth)})
                else:
                    held.append(action)
            elif isinstance(action, Revoke):
                self.bridge.push("revoke", {"node_id": action.node_id, "path_id": action.path_id,
                                            "reason": action.reason})
            else:
                LOG.error("unknown action from the core: %r", action)
        if touched and not confirm:
            for dp in touched.values():
                dp.send_msg(dp.ofproto_parser.OFPBarrierRequest(dp))
        elif touched:
            failures = self.barrier(touched)
            if failures:
                msg = "; ".join(f"switch {d:016x}: {e}" for d, e in sorted(failures.items()))
                if strict:
                    raise BridgeError("unavailable", f"flows not confirmed: {msg}")
                LOG.warning("flows not confirmed: %s", msg)
        self.flows_installed += adds
        return adds, held

    @staticmethod
    def _send_bound(dp: Any, msg: Any) -> int:
        """Bind a datapath-less message to ``dp`` and send it; 1 if it adds a flow."""
        bound = copy.copy(msg)
        bound.datapath = dp
        bound.xid = None
        bound.buf = None
        dp.send_msg(bound)
        ofp = dp.ofproto
        return int(getattr(bound, "command", None) == ofp.OFPFC_ADD
                   and type(bound).__name__ == "OFPFlowMod")

    def barrier(self, dps: dict[int, Any], timeout: float | None = None) -> dict[int, str]:
        """Barrier every switch in ``dps`` in parallel; {dpid: error} for those that failed
        (``timeout``: the [qusec] barrier_timeout window unless given)."""
        timeout = self.cfg.barrier_timeout if timeout is None else timeout
        waits: dict[int, tuple[int, _Barrier]] = {}
        for dpid, dp in dps.items():
            req = dp.ofproto_parser.OFPBarrierRequest(dp)
            xid = dp.set_xid(req)
            b = self.barriers[(dpid, xid)] = _Barrier()
            waits[dpid] = (xid, b)
            if not dp.send_msg(req):
                b.error = "send failed (switch disconnected)"
                b.event.set()
        deadline = time.monotonic() + timeout
        failures: dict[int, str] = {}
        for dpid, (xid, b) in waits.items():
            ok = b.event.wait(max(0.0, deadline - time.monotonic()))
            self.barriers.pop((dpid, xid), None)
            if not ok:
                failures[dpid] = f"no barrier reply within {timeout:.1f}s"
            elif b.error:
                failures[dpid] = b.error
        return failures

    # -- OpenFlow events ---------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features_handler(self, ev: Any) -> None:
        dp = ev.msg.datapath
        self.datapaths[dp.id] = dp
        LOG.info("switch %016x connected (features)", dp.id)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def state_change_handler(self, ev: Any) -> None:
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            self.datapaths[dp.id] = dp
            self._switch_up(dp)
        elif ev.state == DEAD_DISPATCHER and self.datapaths.get(dp.id) is dp:
            self._switch_down(dp.id)

    def _switch_up(self, dp: Any) -> None:
        ports = sorted(p for p in getattr(dp, "ports", {}) if p < dp.ofproto.OFPP_MAX)
        self.switches_up.add(dp.id)
        self.execute(self.core.switch_up(dp.id, ports, time.time()), confirm=False)
        LOG.info("switch %016x up with ports %s", dp.id, ports)

    def _switch_down(self, dpid: int) -> None:
        self.datapaths.pop(dpid, None)
        if dpid in self.switches_up:
            self.switches_up.discard(dpid)
            self.links = {link for link in self.links if dpid not in {end[0] for end in link}}
            self.execute(self.core.switch_down(dpid, time.time()), confirm=False)
            LOG.info("switch %016x down", dpid)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def barrier_reply_handler(self, ev: Any) -> None:
        b = self.barriers.get((ev.msg.datapath.id, ev.msg.xid))
        if b is not None:
            b.event.set()

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error_msg_handler(self, ev: Any) -> None:
        msg = ev.msg
        LOG.error("switch %016x error: type=%d code=%d xid=%d", msg.datapath.id, msg.type,
                  msg.code, msg.xid)
        # A failed flow-mod precedes the barrier that follows it: fail that barrier.
        for (dpid, xid), b in self.barriers.items():
            if dpid == msg.datapath.id and xid > msg.xid and not b.error:
                b.error = f"OpenFlow error type={msg.type} code={msg.code} (xid {msg.xid})"

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status_handler(self, ev: Any) -> None:
        msg = ev.msg
        dp, ofp, port = msg.datapath, msg.datapath.ofproto, msg.desc
        down = (msg.reason == ofp.OFPPR_DELETE
                or bool(port.state & ofp.OFPPS_LINK_DOWN)
                or bool(port.config & ofp.OFPPC_PORT_DOWN))
        if down:
            LOG.info("switch %016x port %d down", dp.id, port.port_no)
            self.links = {link for link in self.links if (dp.id, port.port_no) not in link}
            self.execute(self.core.port_down(dp.id, port.port_no, time.time()), confirm=False)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in_handler(self, ev: Any) -> None:
        msg = ev.msg
        dp = msg.datapath
        in_port = msg.match["in_port"]
        pkt = packet.Packet(msg.data)
        eth = pkt.get_protocol(ethernet.ethernet)
        if eth is None or eth.ethertype == ether_types.ETH_TYPE_LLDP:
            return  # LLDP belongs to os_ken.topology
        if any((dp.id, in_port) in link for link in self.links):
            return  # a switch-to-switch port: no host lives there
        src_ip = ""
        a = pkt.get_protocol(arp.arp)
        if a is not None:
            src_ip = a.src_ip
        else:
            ip = pkt.get_protocol(ipv4.ipv4)
            if ip is not None:
                src_ip = ip.src
        if not src_ip or src_ip == "0.0.0.0":
            return
        actions = self.core.host_seen(eth.src, src_ip, dp.id, in_port, time.time())
        if not actions:
            return
        self.execute(actions, confirm=False)
        # The core's new flows now know this host: run the packet through the table again so
        # the first ARP/IP packet is not lost. Only after a change, so a packet that still
        # misses cannot loop back here more than once.
        parser, ofp = dp.ofproto_parser, dp.ofproto
        dp.send_msg(parser.OFPPacketOut(dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                                        actions=[parser.OFPActionOutput(ofp.OFPP_TABLE)],
                                        data=msg.data))

    # -- LLDP topology events ----------------------------------------------------------------
    @set_ev_cls(topo_event.EventSwitchEnter)
    def switch_enter_handler(self, ev: Any) -> None:
        dp = ev.switch.dp
        if dp.id not in self.switches_up and dp.id is not None:
            self.datapaths[dp.id] = dp
            self._switch_up(dp)

    @set_ev_cls(topo_event.EventSwitchLeave)
    def switch_leave_handler(self, ev: Any) -> None:
        dp = ev.switch.dp
        if self.datapaths.get(dp.id) in (None, dp):  # not a stale leave after a reconnect
            self._switch_down(dp.id)

    @set_ev_cls(topo_event.EventLinkAdd)
    def link_add_handler(self, ev: Any) -> None:
        src, dst = ev.link.src, ev.link.dst
        key = frozenset({(src.dpid, src.port_no), (dst.dpid, dst.port_no)})
        if key in self.links:
            return  # the reverse direction of a link we already have
        self.links.add(key)
        LOG.info("link up %016x:%d <-> %016x:%d", src.dpid, src.port_no, dst.dpid, dst.port_no)
        self.execute(self.core.link_up((src.dpid, src.port_no), (dst.dpid, dst.port_no), time.time()), confirm=False)

    @set_ev_cls(topo_event.EventLinkDelete)
    def link_delete_handler(self, ev: Any) -> None:
        src, dst = ev.link.src, ev.link.dst
        key = frozenset({(src.dpid, src.port_no), (dst.dpid, dst.port_no)})
        if key not in self.links:
            return
        self.links.discard(key)
        LOG.info("link down %016x:%d <-> %016x:%d", src.dpid, src.port_no, dst.dpid, dst.port_no)
        self.execute(self.core.link_down((src.dpid, src.port_no), (dst.dpid, dst.port_no),
                                         time.time()), confirm=False)

    # -- gateway requests (over the bridge) --------------------------------------------------
    def handle_bridge(self, op: str, args: dict) -> dict:
        """One gateway request -> core call -> executed actions -> JSON result."""
        now = time.time()
        if op == "ping":
            return {"pong": True}
        if op == "register":
            info = agent_info_from_wire(args)
            self.execute(self.core.agent_registered(info, now))
            return {"node_id": info.node_id}
        if op == "report":
            node = _str(args, "node_id", True)
            links = [link_state_from_wire(x) for x in args.get("links", [])]
            self.execute(self.core.agent_report(node, links, now))
            return {}
        if op == "gone":
            self.execute(self.core.agent_gone(_str(args, "node_id", True), now))
            return {}
        if op == "request_path":
            return self._request_path(path_request_from_wire(args), now)
        if op == "release":
            path_id = _str(args, "path_id", True)
            actions = self.core.release_path(path_id, now)
            self.execute(actions or [])
            return {"released": bool(actions)}
        if op == "state":
            return self.core.export_etsi015()
        if op == "status":
            return self.status()
        raise BridgeError("invalid", f"unknown op {op!r}")

    def _request_path(self, req: PathRequest, now: float) -> dict:
        t0 = time.monotonic()
        decision, actions = self.core.request_path(req, now)
        reply: dict[str, Any] = {
            "granted": decision.granted, "refusal": decision.refusal, "rule": decision.rule,
            "reason": decision.reason, "security_level": decision.security_level,
            "cost": decision.cost, "expires_unix_ms": int(decision.expires_at * 1000),
            "paths": [], "authorisations": [], "flows_installed": 0}
        if not decision.granted:
            self.execute(actions)
            reply["app_ms"] = (time.monotonic() - t0) * 1000
            return reply
        try:
            adds, held = self.execute(actions, push_auth=False, strict=True)
        except BridgeError:
            for path_id in decision.path_ids:  # no half-installed path stays authorised
                self.execute(self.core.release_path(path_id, time.time()) or [])
            raise
        addrs = relay_addrs(a.auth for a in held)
        costs = list(getattr(decision, "costs", []) or [])
        for i, (hops, path_id) in enumerate(zip(decision.paths, decision.path_ids)):
            reply["paths"].append({
                "path_id": path_id, "cost": costs[i] if i < len(costs) else decision.cost,
                "share_index": i,
                "hops": [{"node_id": n, "relay_addr": addrs.get(n, "")} for n in hops]})
        reply["authorisations"] = [{"node_id": a.node_id, "auth": auth_to_wire(a.auth)} for a in held]
        reply["flows_installed"] = int(getattr(decision, "flows_installed", 0) or 0) or adds
        reply["app_ms"] = (time.monotonic() - t0) * 1000
        return reply

    def status(self) -> dict:
        """The app's own view, merged with the core's status (for /healthz and metrics)."""
        core_status = self.core.status() or {}
        return {"switches": sorted(self.switches_up), "switch_links": len(self.links),
                "links": sorted(sorted(list(end) for end in link) for link in self.links),
                "flows_installed": self.flows_installed, "gateway_restarts": self.gateway_restarts,
                "gateway_connections": self.bridge.connections, "core": core_status}
