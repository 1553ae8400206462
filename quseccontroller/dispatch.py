"""The app's side of the bridge: one gateway request -> core call -> executed actions -> JSON result.

What the core decides here (grants and refusals, registrations, agents gone, reroutes, QKD
links becoming usable or not) is recorded in the app's event log (``quseccontroller.events``);
the gateway adds what it refuses itself (``note``) and reads the log (``events``)."""
from __future__ import annotations

import time
from typing import Any, Callable

from quseccontroller import records
from quseccontroller.bridge import BridgeError
from quseccontroller.actions import Revoke
from quseccontroller.core import NotPathSource, QuSeCCore
from quseccontroller.events import EventLog
from quseccontroller.registration import Refused
from quseccontroller.sender import Sender, Unconfirmed


# What the gateway decides on its own and tells the log (``note`` op).
NOTE_KINDS = ("registration_refused", "path_refused")


class BridgeDispatch:
    """Handles the bridge ops (``quseccontroller.bridge.OPS``) for the app."""

    def __init__(self, core: QuSeCCore, sender: Sender, status: Callable[[], dict],
                 events: EventLog | None = None):
        self.core = core
        self.sender = sender
        self.status = status
        self.events = events if events is not None else EventLog()

    def handle(self, op: str, args: dict) -> dict:
        now = time.time()
        if op == "ping":
            return {"pong": True}
        if op == "register":
            info = records.agent_info_from_wire(args)
            node = info.node_id
            usable, alarms, routes = self._usable_links(node), self._alarms(node), self._routes()
            try:
                actions = self.core.agent_registered(info, now, records.cert_addresses_from_wire(args))
            except Refused as exc:   # the gateway refuses the stream with the reason
                self.events.record("registration_refused", now, node=info.node_id,
                                   reason=exc.reason, message=exc.message)
                raise BridgeError("permission", exc.message, {"reason": exc.reason,
                                                              "node_id": info.node_id,
                                                              **exc.details}) from None
            self.events.record("agent_registered", now, node=info.node_id,
                               links=len(info.links), saes=len(info.saes))
            self._record_alarms(info.node_id, alarms, now)
            self._execute(actions, now, usable, routes, node)
            return {"node_id": info.node_id, "report_interval_ms": self.core.report_interval_ms()}
        if op == "report":
            return self._report(args, now)
        if op == "reports":   # the reports that waited in the gateway while the last batch was here
            return {"results": [self._one_of_batch(r, now) for r in records.reports_from_wire(args)]}
        if op == "gone":
            node = records.node_id_from_wire(args)
            usable, routes = self._usable_links(node), self._routes()
            actions = self.core.agent_gone(node, now)
            self.events.record("agent_left", now, node=node)
            self._execute(actions, now, usable, routes, node)
            return {}
        if op == "request_path":
            return self.request_path(args, now)
        if op == "release":
            path_id, by = records.release_from_wire(args)
            try:
                actions = self.core.release_path(path_id, now, by=by)
            except NotPathSource as exc:
                raise BridgeError("permission", str(exc), {"reason": "not_source", "node_id": by,
                                                           "path_id": path_id}) from None
            self.sender.execute(actions or [])
            return {"released": bool(actions)}
        if op == "state":
            return self.core.export_etsi015()
        if op == "export":
            ex = self.core.export_domain(records.export_seq_from_wire(args))
            if ex is None:
                raise BridgeError("not_found", "this QuSeC runs no domain (its inventory has no [domain])")
            return records.domain_export_to_wire(ex)
        if op == "reach":
            return records.reaches_to_wire(self.core.reach_from(records.reach_node_from_wire(args)))
        if op == "status":
            return self.status()
        if op == "events":
            return self.read_events(args)
        if op == "note":
            return self.note(args, now)
        raise BridgeError("invalid", f"unknown op {op!r}")

    # -- the event log -----------------------------------------------------------------------
    def read_events(self, args: dict) -> dict:
        """``events`` op: the events after ``since`` (at most ``limit``)."""
        try:
            since, limit = int(args.get("since", 0)), int(args.get("limit", 1000))
        except (TypeError, ValueError):
            raise BridgeError("invalid", "events: since and limit must be integers") from None
        if since < 0 or limit < 0:
            raise BridgeError("invalid", "events: since and limit must not be negative")
        return self.events.since(since, limit)

    def note(self, args: dict, now: float) -> dict:
        """``note`` op: an event the gateway decided on its own (a refusal before the app saw
        the request); only the kinds it decides, with plain fields."""
        kind, fields = args.get("kind"), args.get("fields", {})
        if kind not in NOTE_KINDS or not isinstance(fields, dict) or not all(
                isinstance(v, (str, int, float, bool)) for v in fields.values()):
            raise BridgeError("invalid", f"note: kind must be one of {', '.join(NOTE_KINDS)} "
                                         "with plain fields")
        try:
            event = self.events.record(kind, now, source="gateway", **fields)
        except (ValueError, TypeError) as exc:
            raise BridgeError("invalid", f"note: {exc}") from None
        return {"seq": event["seq"]}

    def _links_of(self, node: str) -> list[str]:
        """``node``'s QKD link ids (an agent event changes no other link: O(degree), not O(links))."""
        return self.core.state.links_of(node)

    def _usable_links(self, node: str) -> dict[str, bool]:
        links = self.core.state.links
        return {lid: links[lid].usable() for lid in self._links_of(node) if lid in links}

    def _routes(self) -> dict[str, tuple[str, ...]]:
        return {pid: tuple(ap.nodes) for pid, ap in self.core.paths.items()}

    def _alarms(self, node: str) -> dict[tuple[str, str], str]:
        links = self.core.state.links
        return {(lid, n): a for lid in self._links_of(node) if lid in links
                for n, a in links[lid].alarms.items()}

    def _record_alarms(self, node: str, before: dict[tuple[str, str], str], now: float) -> None:
        """A ``qkd_alarm`` event for each of ``node``'s link ends whose alarm was raised or cleared."""
        for lid in self._links_of(node):
            rec = self.core.state.links.get(lid)
            if rec is None:
                continue
            was, alarm = before.get((lid, node), ""), rec.alarms.get(node, "")
            if alarm != was:
                self.events.record("qkd_alarm", now, link=lid, node=node,
                                   state="raised" if alarm else "cleared", reason=alarm or was,
                                   qber=rec.qber.get(node, 0.0))

    def _execute(self, actions: list, now: float, usable_before: dict[str, bool],
                 routes_before: dict[str, tuple[str, ...]], node: str) -> None:
        """Execute the actions of an agent event, recording the QKD links that became usable
        or stopped being usable and the paths the core moved or revoked (a move that keeps
        every node of the old route drops none, so it is found by comparing the routes)."""
        links = self.core.state.links
        for lid in self._links_of(node):
            rec = links.get(lid)
            if rec is None:
                continue
            up = rec.usable()
            if up != usable_before.get(lid, False):
                self.events.record("qkd_link_up" if up else "qkd_link_down", now, link=lid,
                                   a=rec.a, b=rec.b, status=rec.overall_status())
        seen: set[str] = set()
        for a in actions:
            if not isinstance(a, Revoke) or a.path_id in seen or not (
                    a.reason == "rerouted" or a.reason.startswith("rerouting failed")):
                continue
            seen.add(a.path_id)
            ap = self.core.paths.get(a.path_id)
            if ap is not None:
                self.events.record("reroute", now, path_id=a.path_id, result="moved",
                                   nodes=list(ap.nodes))
            else:
                self.events.record("reroute", now, path_id=a.path_id, result="revoked",
                                   reason=a.reason)
        for pid, route in sorted(routes_before.items()):
            ap = self.core.paths.get(pid)
            if pid not in seen and ap is not None and tuple(ap.nodes) != route:
                self.events.record("reroute", now, path_id=pid, result="moved", nodes=list(ap.nodes))
        # Sent with their barriers, not waited for: an agent's event gates nothing on them (a path
        # grant's own barrier confirms everything sent to its switches before it), and waiting
        # held each registration up to the barrier timeout while ovs-vswitchd worked through a
        # 200-node bring-up's flows, so agents gave up and registered again (twice as many flows).
        self.sender.execute(actions, confirm=False)

    def _report(self, args: dict, now: float) -> dict:
        node, links = records.report_from_wire(args)
        usable, alarms, routes = self._usable_links(node), self._alarms(node), self._routes()
        kept, refused = self.core.screen_report(node, links)
        actions = self.core.agent_report(node, kept, now)
        self._record_alarms(node, alarms, now)
        self._execute(actions, now, usable, routes, node)
        return {"refused": [records.link_refusal_to_wire(r) for r in refused]}

    def _one_of_batch(self, args: dict, now: float) -> dict:
        """One report of a ``reports`` batch: its result, or the error that refused it alone."""
        try:
            return self._report(args, now)
        except BridgeError as exc:
            return {"error": exc.to_wire()}

    def request_path(self, args: dict, now: float) -> dict[str, Any]:
        """Decide; for a grant, install the flows and confirm them by barrier (the
        authorisations go back in the result for the gateway to deliver and wait for)."""
        req = records.path_request_from_wire(args)
        t0 = time.monotonic()
        decision, actions = self.core.request_path(req, now)
        pair = {"src": req.src_node, "dst": req.dst_node, "src_sae": req.src_sae,
                "dst_sae": req.dst_sae, "application": req.application}
        if req.handoff is not None:   # the key leaves the domain at dst, over this crossing
            pair.update(crossing=req.handoff.crossing, peer_domain=req.handoff.peer_domain,
                        peer_kme=req.handoff.peer_kme)
        if not decision.granted:
            self.events.record("path_refused", now, **pair, reason=decision.refusal,
                               message=decision.reason, rule=decision.rule)
            self.sender.execute(actions)
            return records.decision_to_wire(decision, app_ms=(time.monotonic() - t0) * 1000)
        try:
            adds, held = self.sender.execute(actions, push_auth=False, strict=True)
        except Unconfirmed as exc:
            for path_id in decision.path_ids:  # no half-installed path stays authorised
                self.sender.execute(self.core.release_path(path_id, time.time()) or [])
            self.events.record("path_refused", now, **pair, reason="unconfirmed",
                               message=str(exc), rule=decision.rule)
            raise BridgeError("unavailable", str(exc), exc.details) from None
        self.events.record("path_granted", now, **pair, paths=[list(p) for p in decision.paths],
                           path_ids=list(decision.path_ids), rule=decision.rule,
                           security_level=decision.security_level)
        return records.decision_to_wire(decision, held, adds, app_ms=(time.monotonic() - t0) * 1000)
