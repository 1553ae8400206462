"""A domain QuSeC's link to its parent controller, in the gateway process.

Every interval (the one the parent's ack names) it asks the app for the domain's export
(``export`` bridge op: borders and what the domain carries between them, never an inside node)
and sends it to the parent over mutual TLS. A failure is logged once per change and kept in
``status()`` (``/status``'s ``parent``) and the ``qusec_parent_export_ok`` gauge; the loop keeps
trying. Keys inside the domain never depend on it.

For a path to another domain's SAE it asks the parent for the chain (:meth:`ParentLink.choose`):
the reach from the source node to each border (the ``reach`` bridge op) is kept for one export
interval, the same freshness as the rest of what the parent knows of this domain, and the SAEs the
last export offered tell the gateway which slave SAEs are certainly another domain's
(:meth:`ParentLink.foreign`). The handoff of the last chain per source node and SAE is kept as
a guess the gateway grants toward while the parent chooses (:meth:`ParentLink.last_handoff`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from google.protobuf import json_format

from quseccontroller import records
from quseccontroller.bridge import BridgeError
from quseccontroller.parent.chain import Chain, ChainRequest
from quseccontroller.parent.client import ParentClient, ParentRefused
from quseccontroller.proto import parent_pb2

LOG = logging.getLogger(__name__)
FIRST_INTERVAL_S = 2.0
MIN_INTERVAL_S = 0.1
MAX_REACHES = 4096   # source nodes (and source, SAE pairs) whose reaches (handoffs) are kept at once


class ParentLink:
    def __init__(self, gateway: Any, client: ParentClient, addr: str) -> None:
        self.gateway = gateway      # the ControlServicer: its ``call`` reaches the app
        self.client = client
        self.addr = addr
        self.interval_s = FIRST_INTERVAL_S
        self.exports = 0
        self.last_ok_at = 0.0       # wall time of the last export the parent took
        self.error = ""
        self.saes: frozenset[str] | None = None   # what the last export offered (None: no export yet)
        self._reaches: dict[str, tuple[float, dict]] = {}   # source node -> (monotonic time, reaches)
        self._handoffs: dict[tuple[str, str], dict] = {}    # (source node, SAE) -> the last chain's handoff
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
        self.saes = frozenset(s.sae for s in msg.saes)
        self._reaches.clear()
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

    def last_handoff(self, src_node: str, dst_sae: str) -> dict | None:
        """The handoff of the last chain from ``src_node`` to ``dst_sae`` (a guess at the next)."""
        return self._handoffs.get((src_node, dst_sae))

    def remember_handoff(self, src_node: str, dst_sae: str, handoff: dict) -> None:
        if len(self._handoffs) >= MAX_REACHES:
            self._handoffs.clear()
        self._handoffs[(src_node, dst_sae)] = dict(handoff)

    def foreign(self, sae: str) -> bool:
        """Whether ``sae`` is not one this domain offered in its last export taken by the parent."""
        return self.saes is not None and sae not in self.saes

    async def reaches(self, node: str) -> dict:
        """The reach from ``node`` to each border, asked of the app at most once an interval."""
        now = time.monotonic()
        got = self._reaches.get(node)
        if got is None or now - got[0] >= self.interval_s:
            got = (now, records.reaches_from_wire(await self.gateway.call("reach", {"node": node})))
            if len(self._reaches) >= MAX_REACHES:
                self._reaches.clear()
            self._reaches[node] = got
        return got[1]

    async def choose(self, src_node: str, dst_sae: str, bits: int) -> Chain:
        """The parent's chain from ``src_node`` to another domain's SAE (ParentRefused if none)."""
        return await self.client.choose(ChainRequest("", dst_sae, bits, await self.reaches(src_node)))

    def status(self) -> dict:
        return {"addr": self.addr, "ok": not self.error and self.exports > 0, "exports": self.exports,
                "last_ok_at": self.last_ok_at, "interval_s": self.interval_s, "error": self.error}
