"""QuSeC os-ken app: a thin shim between OpenFlow/LLDP events, the pure core and the gateway.

Load it with ``osken-manager [--observe-links] [--config-file qusec.conf] quseccontroller.app``.
Like Faucet's ``faucet.py``, every handler only translates: it calls a ``QuSeCCore`` method
with ``now=time.time()`` and hands the returned actions to the ``Sender`` (FlowMods are bound
to the datapath at send time and confirmed with a barrier; Authorise/Revoke go to the
gateway). Gateway requests arrive over the Unix socket of ``quseccontroller.bridge`` and are
handled by ``quseccontroller.dispatch``. This process never imports grpc (grpcio would freeze
the eventlet hub): the gRPC API is served by ``quseccontroller.gateway``, a companion process
this app starts and restarts (``quseccontroller.supervisor``).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from os_ken import cfg
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER, HANDSHAKE_DISPATCHER,
                                       MAIN_DISPATCHER, set_ev_cls)
from os_ken.lib import hub
from os_ken.lib.packet import arp, ethernet, ether_types, ipv4, packet
from os_ken.ofproto import ofproto_v1_3
from os_ken.topology import event as topo_event

from quseccontroller import lldpfix, logformat, options
from quseccontroller.bridge import AppBridgeServer
from quseccontroller.core import QuSeCCore
from quseccontroller.dispatch import BridgeDispatch
from quseccontroller.events import REFUSALS, EventLog
from quseccontroller.inventory import load as load_inventory
from quseccontroller.policywatch import PolicyWatch
from quseccontroller.sender import Sender
from quseccontroller.supervisor import GatewaySupervisor, exit_with_parent
from quseccontroller.switchgate import SwitchGate

LOG = logging.getLogger(__name__)
logformat.adopt_osken_handlers()  # os-ken's own handlers write QuSeC's logfmt lines from here on
lldpfix.install()  # before os_ken.topology starts its link-expiry thread

CONF = cfg.CONF
# The [qusec] group, from the option table; osken-manager parses the command line before it
# imports apps, so they are set in a config file (--config-file) rather than as new CLI flags.
OPTS = options.register(CONF)


class QuSeCApp(app_manager.OSKenApp):
    """Feeds OpenFlow, LLDP topology and gateway events to QuSeCCore; sends its actions."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cfg = options.AppConfig.from_conf(CONF)
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        # what QuSeC decided, for /events and /status (not self.events: OSKenApp's own queue)
        self.event_log = EventLog()
        self.policy = PolicyWatch(self.cfg.policy, self.event_log)
        # A bad inventory at start-up is fatal, like a bad policy file: its problems are the error.
        inv = load_inventory(self.cfg.inventory) if self.cfg.inventory else None
        if inv is None:
            LOG.warning("event=no_inventory: registrations are taken as they come (any node id, "
                        "trust level, SAEs and links a node claims); set [qusec] inventory")
        self.core = QuSeCCore(self.policy.initial(), path_ttl_s=self.cfg.path_ttl, inventory=inv)
        self.gate = SwitchGate()     # over OpenFlow TLS, only role switch certificates
        self.switches_up: set[int] = set()
        self.links: set[frozenset] = set()          # undirected LLDP links, by their two ends
        self.bridge = AppBridgeServer(self.cfg.bridge_socket, self.handle_bridge)
        self.sender = Sender(self.bridge, self.cfg.barrier_timeout)
        self.datapaths = self.sender.datapaths      # dpid -> datapath, kept by the handlers
        self.dispatch = BridgeDispatch(self.core, self.sender, self.status, self.event_log)
        self.gateway = GatewaySupervisor(lambda: self.cfg.gateway_argv(),
                                         self.cfg.state_dir / options.GATEWAY_LOG)
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Any:
        thread = super().start()
        self.bridge.start()
        self.threads.append(hub.spawn(self._expire_loop))
        if self.cfg.parent_pid:
            self.threads.append(hub.spawn(exit_with_parent, self.cfg.parent_pid,
                                          self.cfg.expire_interval, self.close))
        if self.cfg.gateway == "spawn" and not (self.cfg.ca_cert and self.cfg.cert and self.cfg.key):
            # Mutual TLS is not optional: say so once instead of restarting a failing gateway.
            LOG.error("gRPC gateway NOT started: set ca_cert, cert and key in the [qusec] section "
                      "of the --config-file (OpenFlow keeps running; see docs/controller.md)")
        elif self.cfg.gateway == "spawn":
            self.threads.append(hub.spawn(self.gateway.run))
        if not getattr(CONF, "ctl_cert", None):
            LOG.warning("OpenFlow over plain TCP: any host reaching the port can act as a switch "
                        "(osken-manager --ctl-privkey/--ctl-cert/--ca-certs serve it over TLS)")
        LOG.info("QuSeC app started: state_dir=%s gateway=%s bridge=%s",
                 self.cfg.state_dir, self.cfg.gateway, self.cfg.bridge_socket)
        return thread

    def close(self) -> None:
        self._stopping = True
        self.gateway.stop()
        self.bridge.close()
        super().close()

    def _expire_loop(self) -> None:
        while not self._stopping:
            hub.sleep(self.cfg.expire_interval)
            try:
                self.sender.execute(self.core.expire(time.time()))
                self.policy.poll(lambda table: self.sender.execute(self.core.reload_policy(table) or []),
                                 time.time())
            except Exception:  # noqa: BLE001 - the sweep must keep running
                LOG.exception("expiry sweep failed")

    def handle_bridge(self, op: str, args: dict) -> dict:
        """One gateway request (``AppBridgeServer`` calls this on a green thread)."""
        return self.dispatch.handle(op, args)

    def status(self) -> dict:
        """The app's own view, merged with the core's status (for /healthz and metrics)."""
        core_status = self.core.status() or {}
        return {"switches": sorted(self.switches_up), "switch_links": len(self.links),
                "links": sorted(sorted(list(end) for end in link) for link in self.links),
                "flows_installed": self.sender.flows_installed,
                "gateway_restarts": self.gateway.restarts, "switches_refused": dict(self.gate.refused),
                "gateway_connections": self.bridge.connections, "core": core_status,
                "policy_reload": self.policy.state(), "events_seq": self.event_log.seq,
                "recent_refusals": self.event_log.recent(REFUSALS)}

    # -- OpenFlow events ---------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features_handler(self, ev: Any) -> None:
        dp = ev.msg.datapath
        if not self.gate.admit(dp):
            return
        self.datapaths[dp.id] = dp
        LOG.info("switch %016x connected (features)", dp.id)

    @set_ev_cls(ofp_event.EventOFPStateChange, [HANDSHAKE_DISPATCHER, MAIN_DISPATCHER, DEAD_DISPATCHER])
    def state_change_handler(self, ev: Any) -> None:
        dp = ev.datapath
        if ev.state == HANDSHAKE_DISPATCHER:   # a new connection: is it a switch at all?
            self.gate.admit(dp)
            return
        if dp.id is None or (ev.state == MAIN_DISPATCHER and not self.gate.admit(dp)):
            return
        if ev.state == MAIN_DISPATCHER:
            self.datapaths[dp.id] = dp
            self._switch_up(dp)
        elif ev.state == DEAD_DISPATCHER and self.datapaths.get(dp.id) is dp:
            self._switch_down(dp.id)

    def _switch_up(self, dp: Any) -> None:
        ports = sorted(p for p in getattr(dp, "ports", {}) if p < dp.ofproto.OFPP_MAX)
        self.switches_up.add(dp.id)
        self.event_log.record("switch_up", time.time(), dpid=dp.id, ports=len(ports))
        self.sender.execute(self.core.switch_up(dp.id, ports, time.time()), confirm=False)
        LOG.info("switch %016x up with ports %s", dp.id, ports)

    def _switch_down(self, dpid: int) -> None:
        self.datapaths.pop(dpid, None)
        if dpid in self.switches_up:
            self.switches_up.discard(dpid)
            self.links = {link for link in self.links if dpid not in {end[0] for end in link}}
            self.event_log.record("switch_down", time.time(), dpid=dpid)
            self.sender.execute(self.core.switch_down(dpid, time.time()), confirm=False)
            LOG.info("switch %016x down", dpid)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def barrier_reply_handler(self, ev: Any) -> None:
        self.sender.barrier_reply(ev.msg.datapath.id, ev.msg.xid)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error_msg_handler(self, ev: Any) -> None:
        msg = ev.msg
        LOG.error("switch %016x error: type=%d code=%d xid=%d", msg.datapath.id, msg.type,
                  msg.code, msg.xid)
        self.sender.openflow_error(msg.datapath.id, msg.xid, msg.type, msg.code)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status_handler(self, ev: Any) -> None:
        msg = ev.msg
        dp, ofp, port = msg.datapath, msg.datapath.ofproto, msg.desc
        down = (msg.reason == ofp.OFPPR_DELETE
                or bool(port.state & ofp.OFPPS_LINK_DOWN)
                or bool(port.config & ofp.OFPPC_PORT_DOWN))
        if down:
            LOG.info("switch %016x port %d down", dp.id, port.port_no)
            for link in sorted(self.links, key=sorted):
                if (dp.id, port.port_no) in link:
                    self._link_event("switch_link_down", link, "port_down")
            self.links = {link for link in self.links if (dp.id, port.port_no) not in link}
            self.sender.execute(self.core.port_down(dp.id, port.port_no, time.time()), confirm=False)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in_handler(self, ev: Any) -> None:
        msg = ev.msg
        dp = msg.datapath
        if not self.gate.admit(dp):
            return
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
        self.sender.execute(actions, confirm=False)
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
        if dp.id not in self.switches_up and dp.id is not None and self.gate.admit(dp):
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
        self._link_event("switch_link_up", key)
        LOG.info("link up %016x:%d <-> %016x:%d", src.dpid, src.port_no, dst.dpid, dst.port_no)
        self.sender.execute(self.core.link_up((src.dpid, src.port_no), (dst.dpid, dst.port_no), time.time()), confirm=False)

    @set_ev_cls(topo_event.EventLinkDelete)
    def link_delete_handler(self, ev: Any) -> None:
        src, dst = ev.link.src, ev.link.dst
        key = frozenset({(src.dpid, src.port_no), (dst.dpid, dst.port_no)})
        if key not in self.links:
            return
        self.links.discard(key)
        self._link_event("switch_link_down", key, "lldp")
        LOG.info("link down %016x:%d <-> %016x:%d", src.dpid, src.port_no, dst.dpid, dst.port_no)
        self.sender.execute(self.core.link_down((src.dpid, src.port_no), (dst.dpid, dst.port_no),
                                         time.time()), confirm=False)

    def _link_event(self, kind: str, link: frozenset, cause: str = "") -> None:
        ends = sorted(link)
        (a_dpid, a_port), (b_dpid, b_port) = ends[0], ends[-1]
        fields = {"cause": cause} if cause else {}
        self.event_log.record(kind, time.time(), a_dpid=a_dpid, a_port=a_port, b_dpid=b_dpid,
                           b_port=b_port, **fields)
