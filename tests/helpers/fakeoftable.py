"""A small OpenFlow 1.3 pipeline simulator over OFPFlowMod objects, for semantic flow tests."""
from __future__ import annotations

from dataclasses import dataclass

from os_ken.ofproto import ofproto_v1_3 as ofp

CONTROLLER = "controller"


@dataclass
class Entry:
    priority: int
    match: dict
    outputs: tuple
    cookie: int
    idle_timeout: int
    hard_timeout: int
    table: int = 0
    goto: int | None = None


def _instructions(msg) -> tuple[tuple, int | None]:
    outs, goto = [], None
    for inst in msg.instructions:
        if inst.type == ofp.OFPIT_GOTO_TABLE:
            goto = inst.table_id
            continue
        if inst.type != ofp.OFPIT_APPLY_ACTIONS:
            raise AssertionError(f"unsupported instruction {inst}")
        for act in inst.actions:
            if act.type != ofp.OFPAT_OUTPUT:
                raise AssertionError(f"unsupported action {act}")
            outs.append(CONTROLLER if act.port == ofp.OFPP_CONTROLLER else act.port)
    return tuple(outs), goto


class FakeOFTable:
    """One switch's flow tables: apply flow mods, run packets through the pipeline from
    table 0 (highest priority match per table, goto-table instructions followed)."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def apply(self, msg) -> None:
        match = dict(msg.match.items())
        cmd = msg.command
        if cmd in (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
            if cmd == ofp.OFPFC_ADD and msg.hard_timeout and msg.idle_timeout > msg.hard_timeout:
                raise AssertionError("idle timeout beyond hard timeout")
            table = msg.table_id
            if table == ofp.OFPTT_ALL:
                raise AssertionError("a flow mod adding to every table")
            outs, goto = _instructions(msg)
            if goto is not None and goto <= table:
                raise AssertionError(f"goto table {goto} from table {table}: OpenFlow only goes forward")
            self.entries = [e for e in self.entries
                            if (e.table, e.priority, e.match) != (table, msg.priority, match)]
            self.entries.append(Entry(msg.priority, match, outs, msg.cookie, msg.idle_timeout,
                                      msg.hard_timeout, table, goto))
        elif cmd in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            strict = cmd == ofp.OFPFC_DELETE_STRICT

            def doomed(e: Entry) -> bool:
                if msg.table_id != ofp.OFPTT_ALL and e.table != msg.table_id:
                    return False
                if msg.cookie_mask and (e.cookie & msg.cookie_mask) != (msg.cookie & msg.cookie_mask):
                    return False
                if strict:
                    return e.priority == msg.priority and e.match == match
                return all(e.match.get(k) == v for k, v in match.items())
            self.entries = [e for e in self.entries if not doomed(e)]
        else:
            raise AssertionError(f"unsupported flow mod command {cmd}")

    def lookup_in(self, table: int, pkt: dict) -> Entry | None:
        """The highest-priority entry of ``table`` whose every match field equals the packet's."""
        best = None
        for e in self.entries:
            if e.table == table and all(k in pkt and pkt[k] == v for k, v in e.match.items()):
                if best is None or e.priority > best.priority:
                    best = e
        return best

    def lookup(self, pkt: dict) -> Entry | None:
        """The entry that decides the packet's fate: the pipeline's last match from table 0
        (None: a table missed without a table-miss entry, i.e. dropped)."""
        table = 0
        while True:
            e = self.lookup_in(table, pkt)
            if e is None or e.goto is None:
                return e
            table = e.goto

    def forward(self, pkt: dict) -> tuple:
        """Output ports (or CONTROLLER) for a packet; () means dropped (outputs of tables
        passed on the way are applied too)."""
        outs: list = []
        table = 0
        while True:
            e = self.lookup_in(table, pkt)
            if e is None:
                return tuple(outs)
            outs.extend(e.outputs)
            if e.goto is None:
                return tuple(outs)
            table = e.goto


class FakeNetwork:
    """Switch tables plus the wiring between them, to trace packets hop by hop."""

    def __init__(self, wiring: dict[tuple[int, int], tuple[int, int]]) -> None:
        self.tables: dict[int, FakeOFTable] = {}
        self.packet_outs: list[tuple[int, object]] = []
        self.wiring = dict(wiring)
        self.wiring.update({b: a for a, b in wiring.items()})

    def apply(self, actions) -> int:
        """Apply every FlowMods action (others are ignored); returns messages applied."""
        from quseccontroller.actions import FlowMods
        n = 0
        for act in actions:
            if isinstance(act, FlowMods):
                table = self.tables.setdefault(act.dpid, FakeOFTable())
                for msg in act.msgs:
                    if type(msg).__name__ == "OFPPacketOut":
                        self.packet_outs.append((act.dpid, msg))
                        continue
                    table.apply(msg)
                    n += 1
        return n

    def unplug(self, a: tuple[int, int]) -> None:
        b = self.wiring.pop(a, None)
        if b:
            self.wiring.pop(b, None)

    def trace(self, dpid: int, in_port: int, pkt: dict, max_steps: int = 200) -> list[tuple]:
        """Where a packet entering switch ``dpid`` on ``in_port`` ends up: a list of
        (dpid, port) host-facing exits, or (dpid, CONTROLLER). Raises on a forwarding loop."""
        exits: list[tuple] = []
        work = [(dpid, in_port)]
        seen: set = set()
        steps = 0
        while work:
            d, p = work.pop()
            if (d, p) in seen:
                raise AssertionError(f"forwarding loop: packet re-entered switch {d} on port {p}")
            seen.add((d, p))
            steps += 1
            if steps > max_steps:
                raise AssertionError("packet storm")
            for out in self.tables[d].forward(dict(pkt, in_port=p)):
                if out == CONTROLLER:
                    exits.append((d, CONTROLLER))
                elif out == p:
                    continue  # OpenFlow never sends back out of the in_port without OFPP_IN_PORT
                elif (d, out) in self.wiring:
                    work.append(self.wiring[(d, out)])
                else:
                    exits.append((d, out))
        return sorted(exits, key=repr)
