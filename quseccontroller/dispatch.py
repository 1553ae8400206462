"""The app's side of the bridge: one gateway request -> core call -> executed actions -> JSON result."""
from __future__ import annotations

import time
from typing import Any, Callable

from quseccontroller import records
from quseccontroller.bridge import BridgeError
from quseccontroller.core import NotPathSource, QuSeCCore
from quseccontroller.registration import Refused
from quseccontroller.sender import Sender, Unconfirmed


class BridgeDispatch:
    """Handles the bridge ops (``quseccontroller.bridge.OPS``) for the app."""

    def __init__(self, core: QuSeCCore, sender: Sender, status: Callable[[], dict]):
        self.core = core
        self.sender = sender
        self.status = status

    def handle(self, op: str, args: dict) -> dict:
        now = time.time()
        if op == "ping":
            return {"pong": True}
        if op == "register":
            info = records.agent_info_from_wire(args)
            try:
                actions = self.core.agent_registered(info, now, records.cert_addresses_from_wire(args))
            except Refused as exc:   # the gateway refuses the stream with the reason
                raise BridgeError("permission", exc.message, {"reason": exc.reason,
                                                              "node_id": info.node_id,
                                                              **exc.details}) from None
            self.sender.execute(actions)
            return {"node_id": info.node_id}
        if op == "report":
            node, links = records.report_from_wire(args)
            kept, refused = self.core.screen_report(node, links)
            self.sender.execute(self.core.agent_report(node, kept, now))
            return {"refused": [records.link_refusal_to_wire(r) for r in refused]}
        if op == "gone":
            self.sender.execute(self.core.agent_gone(records.node_id_from_wire(args), now))
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
        if op == "status":
            return self.status()
        raise BridgeError("invalid", f"unknown op {op!r}")

    def request_path(self, args: dict, now: float) -> dict[str, Any]:
        """Decide; for a grant, install the flows and confirm them by barrier (the
        authorisations go back in the result for the gateway to deliver and wait for)."""
        req = records.path_request_from_wire(args)
        t0 = time.monotonic()
        decision, actions = self.core.request_path(req, now)
        if not decision.granted:
            self.sender.execute(actions)
            return records.decision_to_wire(decision, app_ms=(time.monotonic() - t0) * 1000)
        try:
            adds, held = self.sender.execute(actions, push_auth=False, strict=True)
        except Unconfirmed as exc:
            for path_id in decision.path_ids:  # no half-installed path stays authorised
                self.sender.execute(self.core.release_path(path_id, time.time()) or [])
            raise BridgeError("unavailable", str(exc), exc.details) from None
        return records.decision_to_wire(decision, held, adds, app_ms=(time.monotonic() - t0) * 1000)
