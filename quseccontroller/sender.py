"""The app's send engine: executes the core's actions on os-ken's hub.

FlowMods come from the core built with ``datapath=None``; they are bound to the switch's
datapath when sent, and a barrier goes only to the switches whose flows changed. Barrier
replies and OpenFlow errors arrive through the app's event handlers (``barrier_reply``,
``openflow_error``); an error fails the barriers that follow it on that switch. Authorise
and Revoke go to the gateway as bridge pushes.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any, Iterable, Protocol

from os_ken.lib import hub

from quseccontroller import records
from quseccontroller.actions import Authorise, FlowMods, Revoke

LOG = logging.getLogger(__name__)


class Pusher(Protocol):
    def push(self, kind: str, body: dict) -> int: ...


class Unconfirmed(Exception):
    """``strict`` execution: a switch is not connected or did not confirm its flows."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


class _Barrier:
    __slots__ = ("event", "error")

    def __init__(self) -> None:
        self.event = hub.Event()
        self.error = ""


class Sender:
    """Sends the core's actions: flows to the connected datapaths, pushes to the gateway."""

    def __init__(self, bridge: Pusher, barrier_timeout: float):
        self.bridge = bridge
        self.barrier_timeout = barrier_timeout     # the [qusec] barrier_timeout
        self.datapaths: dict[int, Any] = {}        # dpid -> the connected datapath
        self.barriers: dict[tuple[int, int], _Barrier] = {}
        self.flows_installed = 0

    def execute(self, actions: Iterable[Any] | None, *, push_auth: bool = True,
                strict: bool = False, confirm: bool = True) -> tuple[int, list[Authorise]]:
        """Send FlowMods (then barrier every touched switch), push Authorise/Revoke.

        Returns (flow-adds sent, authorisations held back when ``push_auth`` is False).
        ``strict``: a missing switch or a failed barrier raises Unconfirmed. ``confirm=False``
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
                        raise Unconfirmed(msg, {"dpid": action.dpid})
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
                    self.bridge.push("authorise", records.authorise_to_wire(action))
                else:
                    held.append(action)
            elif isinstance(action, Revoke):
                self.bridge.push("revoke", records.revoke_to_wire(action))
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
                    raise Unconfirmed(f"flows not confirmed: {msg}")
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
        timeout = self.barrier_timeout if timeout is None else timeout
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

    def barrier_reply(self, dpid: int, xid: int) -> None:
        b = self.barriers.get((dpid, xid))
        if b is not None:
            b.event.set()

    def openflow_error(self, dpid: int, xid: int, err_type: int, code: int) -> None:
        """A failed flow-mod precedes the barrier that follows it: fail that barrier."""
        for (d, bxid), b in self.barriers.items():
            if d == dpid and bxid > xid and not b.error:
                b.error = f"OpenFlow error type={err_type} code={code} (xid {xid})"
