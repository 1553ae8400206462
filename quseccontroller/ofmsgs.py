"""OpenFlow 1.3 message builders (datapath=None; the os-ken shim binds and sends them)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

# One cookie space for every flow QuSeC owns: the top 16 bits say "QuSeC" ('QS'), so deletes and
# audits never touch another app's flows. Base forwarding flows carry KIND_BASE, each relay path
# its own cookie (KIND_PATH | sequence number).
COOKIE_APP = 0x5153 << 48
COOKIE_APP_MASK = 0xFFFF << 48
KIND_BASE = 0x1 << 40
KIND_PATH = 0x2 << 40
COOKIE_KIND_MASK = COOKIE_APP_MASK | (0xFF << 40)
COOKIE_BASE = COOKIE_APP | KIND_BASE
COOKIE_FULL_MASK = 0xFFFF_FFFF_FFFF_FFFF

# Two tables. Table 0 (ingress) only filters what host ports may send: ARP from a port where
# QuSeC learned a host must carry that host's MAC and IP (eth_src, arp_spa), anything else ARP
# from it is dropped; everything else goes on to table 1 (forwarding), where all the other flows
# live. A second table keeps ARP toward a known host unicast while the filter sits above it.
TABLE_INGRESS = 0
TABLE_FORWARD = 1

PRIORITY_INGRESS_MISS = 0      # table 0: on to forwarding
PRIORITY_ARP_GUARD = 1000      # table 0: ARP from a host port: dropped ...
PRIORITY_ARP_BOUND = 2000      # table 0: ... unless it carries the host's learned binding

PRIORITY_MISS = 0
PRIORITY_ARP_FLOOD = 900
PRIORITY_UNICAST = 1000
PRIORITY_LEARN = 1100   # a port where no host was seen yet: everything to the controller
PRIORITY_RELAY_DROP = 20000
PRIORITY_RELAY = 30000

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
IPPROTO_TCP = 6
CONTROLLER = "controller"
MAX_TIMEOUT = 0xFFFF


def path_cookie(seq: int) -> int:
    """The cookie of relay path number ``seq`` (40 bits of sequence)."""
    return COOKIE_APP | KIND_PATH | (seq & 0xFF_FFFF_FFFF)


@dataclass(frozen=True)
class FlowSpec:
    """A flow as data: match items (sorted), outputs (ports or CONTROLLER; empty and no
    ``goto``: drop), the table it lives in and the table it continues in (``goto``)."""
    priority: int
    match: tuple[tuple[str, object], ...]
    outputs: tuple = ()
    cookie: int = COOKIE_BASE
    idle_timeout: int = 0
    hard_timeout: int = 0
    table: int = TABLE_FORWARD
    goto: int | None = None

    @cached_property
    def key(self) -> tuple:
        """Identity in a switch (OpenFlow: table + priority + exact match)."""
        return (self.table, self.priority, self.match)

    @property
    def body(self) -> tuple:
        """What a re-install must change (timeouts are refreshed only with a changed body)."""
        return (self.outputs, self.goto, self.cookie)


def spec(priority: int, outputs: tuple = (), cookie: int = COOKIE_BASE, idle: int = 0,
         hard: int = 0, *, table: int = TABLE_FORWARD, goto: int | None = None,
         **match: object) -> FlowSpec:
    return FlowSpec(priority, tuple(sorted(match.items())), tuple(outputs), cookie,
                    min(int(idle), MAX_TIMEOUT), min(int(hard), MAX_TIMEOUT), table, goto)


def _actions(outputs: tuple) -> list:
    acts = []
    for port in outputs:
        if port == CONTROLLER:
            acts.append(parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER))
        else:
            acts.append(parser.OFPActionOutput(int(port)))
    return acts


class _WireMatch(parser.OFPMatch):
    """An OFPMatch that keeps its wire bytes after the first serialisation: os-ken converts
    every field again each time a message is serialised (about 0.1 ms per flow)."""

    _wire: bytes | None = None

    def serialize(self, buf: bytearray, offset: int) -> int:
        if self._wire is None:
            scratch = bytearray()
            n = super().serialize(scratch, 0)
            self._wire = bytes(scratch[:n])
        if len(buf) < offset:
            buf += bytearray(offset - len(buf))
        buf[offset:offset + len(self._wire)] = self._wire
        return len(self._wire)


@lru_cache(maxsize=1 << 16)
def _match(items: tuple[tuple[str, object], ...]) -> parser.OFPMatch:
    """OFPMatch of a FlowSpec's match, built once: os-ken normalises every field through
    netaddr on construction, the largest cost of a path setup. Messages share the object;
    serialising it again reuses its bytes."""
    return _WireMatch(**dict(items))


@lru_cache(maxsize=1 << 12)
def _instructions(outputs: tuple, goto: int | None = None) -> tuple:
    acts = _actions(outputs)
    inst = (parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, acts),) if acts else ()
    return inst + ((parser.OFPInstructionGotoTable(goto),) if goto is not None else ())


def add(fs: FlowSpec) -> parser.OFPFlowMod:
    """OFPFC_ADD of a FlowSpec (replaces a flow with the same table, priority and match). No
    OFPFF_SEND_FLOW_REM: the core deletes what it installed itself, and a flow-removed message
    per relay flow (parsed and then ignored) cost the controller more than the flow-mod did."""
    inst = list(_instructions(fs.outputs, fs.goto))
    return parser.OFPFlowMod(None, table_id=fs.table, cookie=fs.cookie, command=ofp.OFPFC_ADD,
                             idle_timeout=fs.idle_timeout, hard_timeout=fs.hard_timeout,
                             priority=fs.priority, flags=0,
                             match=_match(fs.match), instructions=inst)


def delete_strict(fs: FlowSpec) -> parser.OFPFlowMod:
    """Delete exactly this flow (table + priority + match), only if it carries our cookie."""
    return parser.OFPFlowMod(None, cookie=fs.cookie, cookie_mask=COOKIE_FULL_MASK,
                             command=ofp.OFPFC_DELETE_STRICT, priority=fs.priority,
                             out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, table_id=fs.table,
                             match=_match(fs.match))


def delete_cookie(cookie: int, mask: int = COOKIE_FULL_MASK) -> parser.OFPFlowMod:
    """Delete every flow whose cookie matches ``cookie`` under ``mask``."""
    return parser.OFPFlowMod(None, cookie=cookie, cookie_mask=mask, command=ofp.OFPFC_DELETE,
                             out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, table_id=ofp.OFPTT_ALL,
                             match=parser.OFPMatch())


def delete_all_ours() -> parser.OFPFlowMod:
    """Delete every QuSeC flow on a switch (used when a switch (re)connects)."""
    return delete_cookie(COOKIE_APP, COOKIE_APP_MASK)


# ARP probes (RFC 5227 style: sender IP 0.0.0.0) that make a quiet vKMS host answer, so QuSeC
# learns where it is attached before any relay traffic needs to reach it.
PROBE_MAC = "02:51:53:00:00:01"


def arp_probe(target_ip: str, ports: list[int]) -> parser.OFPPacketOut:
    """A packet-out sending one ARP request for ``target_ip`` out of each of ``ports``."""
    from os_ken.lib.packet import arp, ethernet, packet
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=PROBE_MAC, ethertype=ETH_ARP))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=PROBE_MAC, src_ip="0.0.0.0",
                             dst_mac="00:00:00:00:00:00", dst_ip=target_ip))
    pkt.serialize()
    return parser.OFPPacketOut(None, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                               actions=[parser.OFPActionOutput(int(p)) for p in ports],
                               data=bytes(pkt.data))
