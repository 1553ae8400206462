"""A domain QuSeC's link to its parent controller, in the gateway process.

Every interval (the one the parent's ack names) it asks the app for the domain's export
(``export`` bridge op: borders and what the domain carries between them, never an inside node)
and sends it to the parent over mutual TLS. A failure is logged once per change and kept in
``status()`` (``/status``'s ``parent``) and the ``qusec_parent_export_ok`` gauge; the loop keeps
trying. Keys inside the domain never depend on it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from google.protobuf import json_format

from quseccontroller.bridge import BridgeError
from quseccontroller.parent.client import ParentClient, ParentRefused
from quseccontroller.proto import parent_pb2

LOG = logging.getLogger(__name__)
FIRST_INTERVAL_S = 2.0
MIN_INTERVAL_S = 0.1


class ParentLink:
    def __init__(self, gateway: Any, client: ParentClient, addr: str) -> None:
        self.gateway = gateway      # the ControlServicer: its ``call`` reaches the app
        self.client = client
        self.addr = addr
        self.interval_s = FIRST_INTERVAL_S
        self.exports = 0
        self.last_ok_at = 0.0       # wall time of the last export the parent took
        self.error = ""
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.client.close()

    async def export_once(self) -> None:
        wire = await self.gateway.call("export", {"seq": time.time_ns()})
        msg = json_format.ParseDict(wire, parent_pb2.DomainExport())
        self.interval_s = max(await self.client.send_export(msg), MIN_INTERVAL_S)
        self.exports += 1
        self.last_ok_at = time.time()

    async def _run(self) -> None:
        while True:
            try:
                await self.export_once()
                if self.error:
                    LOG.info("event=parent_export_ok parent=%s", self.addr)
                self.error = ""
            except (BridgeError, ParentRefused, OSError) as exc:
                msg = f"{type(exc).__name__}: {exc}"
                if msg != self.error:
                    LOG.warning("event=parent_export_failed parent=%s msg=%r", self.addr, msg)
                self.error = msg
            await asyncio.sleep(self.interval_s)

    def status(self) -> dict:
        return {"addr": self.addr, "ok": not self.error and self.exports > 0, "exports": self.exports,
                "last_ok_at": self.last_ok_at, "interval_s": self.interval_s, "error": self.error}
