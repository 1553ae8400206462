"""The QuSeCControl servicer (asyncio): proto in -> bridge call to the app -> proto out.

The app (where the core decides and the flows go in) is behind ``GatewayBridgeClient``, a
threaded client: calls run in the loop's executor, pushes come back onto the loop with
``call_soon_threadsafe``. The only state kept here is what belongs to gRPC: the agents' open
control streams (capped per certificate and in total), and the acknowledgements of delivered
authorisations. Every method serves role node only, for the node its certificate names.
Errors end calls through ``rpc.maps_errors``. What the gateway refuses on its own (before
or after the app decided: role, node id, stream caps, Register timeout, undelivered
authorisations) goes to the app's event log with a ``note``; the app logs its own decisions.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator

import grpc

from quseccontroller import options, records
from quseccontroller.bridge import BridgeError, GatewayBridgeClient
from quseccontroller.gateway import rpc
from quseccontroller.gateway.metrics import Metrics
from quseccontroller.gateway.reports import ReportQueue, Taken
from quseccontroller.gateway.rpc import Abort, PathRefused, bad_request, error_info, maps_errors
from quseccontroller.gateway.sessions import AgentSession, Sessions, StreamLimits, StreamSlot, StreamsFull
from quseccontroller.identity import NODE, Identity
from quseccontroller.parent.chain import Chain
from quseccontroller.parent.client import ParentRefused
from quseccontroller.proto import control_pb2, control_pb2_grpc

LOG = logging.getLogger(__name__)

SERVICE = control_pb2.DESCRIPTOR.services_by_name["QuSeCControl"].full_name
STATUS_SHARE = 0.05   # the app's status read for /metrics: at most this share of the time ...
REUSE_NODES = 1000    # ... for a network of more nodes (a smaller one's is read fresh: it is cheap,
                      # and a gauge must not lag a change because the machine was slow once)


def check_register(reg: control_pb2.Register) -> None:
    if not reg.node_id:
        raise bad_request("register.node_id", "required")
    if reg.relay_addr:
        try:
            options.split_hostport(reg.relay_addr, "register.relay_addr")
        except ValueError as exc:
            raise bad_request("register.relay_addr", str(exc)) from None
    for i, ls in enumerate(reg.links):
        if not ls.link_id or not ls.peer_node:
            raise bad_request(f"register.links[{i}]", "link_id and peer_node are required")


class AppRefused(PathRefused):
    """The app refused the path (and logged the refusal itself)."""


def handoff_wanted(request: control_pb2.PathRequest, result: dict, has_parent: bool) -> bool:
    """Whether to ask the parent: the agent did not know the slave SAE (no ``dst_node``), nor
    does this domain (the app refused ``unknown_sae``), and there is a parent to ask."""
    return (has_parent and not request.dst_node and bool(request.dst_sae)
            and not result.get("granted") and result.get("refusal") == "unknown_sae")


def parent_refusal(reason: str) -> str:
    """A parent's refusal as the path refusal the agent gets: an SAE no domain exports stays
    ``unknown_sae`` (the master's 400); anything else (the parent down, no chain) is
    ``no_chain`` / ``parent_unavailable`` (its 503)."""
    if reason == "unknown_sae":
        return "unknown_sae"
    if reason in ("unavailable", "deadline_exceeded", "cancelled", "unknown"):
        return "parent_unavailable"
    return "no_chain"


def handoff_of(chain: Chain) -> dict:
    """The handoff of this domain's segment: its exit KME at the chain's first crossing (an
    interworking site or a PQC link) and the peer KME there. The exit may be the source node
    itself: the segment is then empty and the key goes straight across."""
    if not chain.crossings:
        raise PathRefused("no_chain", "the parent's chain crosses no domain")
    x = chain.crossings[0]
    if x.kind not in ("etsi020", "pqc"):
        raise PathRefused("unsupported_crossing", f"the chain to domain {chain.dst_domain} crosses "
                          f"{x.id} of kind {x.kind!r}, which no KME here speaks",
                          message=f"unsupported crossing {x.id} ({x.kind})")
    return {"crossing": x.id, "kind": x.kind, "peer_domain": x.to_domain, "peer_kme": x.to_node,
            "exit_node": x.from_node}


def _peer(_request: Any, context: Any) -> str:
    return f"peer={context.peer()}"


def _path(request: control_pb2.PathRequest, _context: Any) -> str:
    return f"src={request.src_node} dst={request.dst_node} app={request.application}"


def _release(request: control_pb2.ReleaseRequest, context: Any) -> str:
    return f"path={request.path_id} peer={context.peer()}"


def _decided_by_app(exc: Abort) -> bool:
    """A registration the app refused (and logged itself)."""
    return any(getattr(d, "reason", "") == "REGISTRATION_REFUSED" for d in exc.details)


class ControlServicer(control_pb2_grpc.QuSeCControlServicer):
    """QuSeCControl (Connect, RequestPath, ReleasePath) over the bridge to the app."""

    def __init__(self, bridge_path: str, *, gone_grace: float = options.default("gone_grace"),
                 ack_timeout: float = options.default("ack_timeout"),
                 call_timeout: float = options.BRIDGE_CALL_TIMEOUT_S,
                 register_timeout: float = options.default("register_timeout"),
                 max_streams_per_identity: int = options.default("max_streams_per_identity"),
                 max_streams: int = options.default("max_streams")):
        self.gone_grace = gone_grace
        self.ack_timeout = ack_timeout
        self.call_timeout = call_timeout
        self.register_timeout = register_timeout
        self.metrics = Metrics()
        self.parent_link = None   # quseccontroller.gateway.parentlink.ParentLink, set under a parent
        self.sessions = Sessions(gone_grace, self._gone, self.metrics.nodes)
        self.limits = StreamLimits(max_streams_per_identity, max_streams, self.metrics.streams)
        self.bridge = GatewayBridgeClient(bridge_path, self.on_push, self.on_connect)
        self.reports = ReportQueue(self._send_reports, self.metrics.reports_replaced.inc)
        self._status: tuple[dict, float] = ({}, 0.0)   # the last status, reused until then
        self.loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the servicer runs on (pushes from the bridge thread go there)."""
        self.loop = loop

    # -- bridge side -------------------------------------------------------------------------
    async def call(self, op: str, args: dict | None = None) -> dict:
        """One app call, awaited on the loop (no thread held); its BridgeError ends the gRPC
        call with the mapped status."""
        return await self.bridge.acall(op, args or {}, timeout=self.call_timeout)

    def on_push(self, msg: dict) -> None:
        """An app push (on the bridge's reader thread): delivered on the loop."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._push, msg)

    def _push(self, msg: dict) -> None:
        node = msg.get("node_id", "")
        session = self.sessions.get(node)
        if session is None:
            LOG.warning("push %s for node %s without a control stream dropped", msg.get("push"), node)
            return
        session.send(records.push_proto(msg))

    def on_connect(self) -> None:
        """A (re)started app knows nothing of open streams: register them again (on a thread
        of the bridge client); one the new app refuses is closed."""
        for s in self.sessions.snapshot().values():
            try:
                self.bridge.call("register", s.register, timeout=self.call_timeout)
            except BridgeError as exc:
                if exc.code != "permission":
                    LOG.warning("re-registering %s failed: %s", s.node_id, exc)
                    continue
                reason = str(exc.details.get("reason", "refused"))
                LOG.warning("event=registration_refused node=%s identity=%s reason=%s msg=%r "
                            "(re-registration with a restarted app)", s.node_id, s.identity,
                            reason, exc.message)
                self.metrics.registrations_refused.labels(reason).inc()
                if self.loop is not None:
                    self.loop.call_soon_threadsafe(s.close)

    def note(self, kind: str, **fields: Any) -> None:
        """Tell the app's event log about a refusal decided here, without waiting (from any
        thread or the loop); a log the app cannot take now is only lost from the log."""
        def send() -> None:
            try:
                self.bridge.call("note", {"kind": kind, "fields": fields}, timeout=2.0)
            except BridgeError as exc:
                LOG.debug("note %s not delivered: %s", kind, exc)
        if self.loop is not None and self.loop.is_running():
            self.loop.run_in_executor(None, send)
        else:
            send()

    def events(self, since: int = 0, limit: int = 1000) -> dict:
        """The app's events after ``since`` (BridgeError when the app is away)."""
        return self.bridge.call("events", {"since": since, "limit": limit}, timeout=5.0)

    def refresh_gauges(self, fresh: bool = True) -> dict:
        """Pull the app's status into the gauges; returns it ({} when the app is away). Not
        ``fresh`` (/metrics): the last one while it is younger than its own cost over
        ``STATUS_SHARE``, on networks of more than ``REUSE_NODES`` nodes (at 10,000 nodes a status
        is ~6 MB: ~0.5 s of the app's hub and of the gateway's GIL)."""
        cached, until = self._status
        if not fresh and cached and time.monotonic() < until:
            return cached
        t0 = time.monotonic()
        try:
            status = self.bridge.call("status", {}, timeout=2.0)
        except BridgeError:
            return {}
        self.metrics.refresh(status)
        if self.parent_link is not None:
            status["parent"] = self.parent_link.status()
            self.metrics.parent_ok.set(1 if status["parent"]["ok"] else 0)
        took = time.monotonic() - t0
        big = len((status.get("core") or {}).get("nodes") or ()) > REUSE_NODES
        self._status = (status, t0 + took / STATUS_SHARE if big else 0.0)
        return status

    # -- Connect -----------------------------------------------------------------------------
    @maps_errors(count="rejected", event="registration_refused", describe=_peer,
                 level=logging.WARNING)
    async def Connect(self, request_iterator: AsyncIterator[control_pb2.AgentMessage],
                      context: Any) -> AsyncIterator[control_pb2.ControllerMessage]:
        slot: StreamSlot | None = None
        try:
            ident = rpc.require_role(context, NODE, "open a control stream")
            try:
                slot = self.limits.admit(str(ident))
            except StreamsFull as exc:
                raise error_info(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), "STREAM_LIMIT",
                                 label="stream_limit", limit=str(self.limits.total)) from None
            stream = request_iterator.__aiter__()
            first = await self._first_message(stream, slot, ident)
            session = await self._open_session(first, ident, slot, context)
        except BaseException as exc:   # refused, the app away, or the client gone
            if isinstance(exc, (Abort, BridgeError)):
                self.metrics.registrations_refused.labels(rpc.to_abort(exc).label).inc()
            if isinstance(exc, Abort) and not _decided_by_app(exc):
                self._note_refused_stream(exc, context)
            if slot is not None:
                self.limits.release(slot)
            raise
        reader = asyncio.ensure_future(self._read_stream(session, stream))
        context.add_done_callback(lambda _ctx: session.close())
        try:
            yield records.registered_proto(session.node_id, session.report_interval_ms)
            while True:
                msg = await session.out.get()
                if msg is None:
                    break
                yield msg
        finally:
            reader.cancel()
            self.limits.release(slot)
            self._close_session(session)

    def _note_refused_stream(self, exc: Abort, context: Any) -> None:
        try:
            who: Identity | None = rpc.peer_identity(context)
        except Abort:
            who = None
        self.note("registration_refused", node=who.name if who and who.role == NODE else "",
                  identity=str(who or ""), peer=context.peer(), reason=exc.label,
                  message=exc.message)

    async def _first_message(self, stream: AsyncIterator[control_pb2.AgentMessage],
                             slot: StreamSlot, ident: Identity) -> control_pb2.AgentMessage:
        """The stream's first message, within ``register_timeout``: a silent stream is closed
        (it would hold a place among the capped streams for nothing)."""
        read = asyncio.ensure_future(stream.__anext__())
        evicted = asyncio.ensure_future(slot.evicted.wait())
        done, _ = await asyncio.wait({read, evicted}, timeout=self.register_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        evicted.cancel()
        if read not in done:
            read.cancel()
            if slot.evicted.is_set():
                raise error_info(grpc.StatusCode.ABORTED, f"replaced by a newer control stream of "
                                 f"{ident} before it registered", "STREAM_REPLACED", label="replaced")
            raise error_info(grpc.StatusCode.DEADLINE_EXCEEDED, f"no Register within "
                             f"{self.register_timeout:g} s of opening the control stream",
                             "REGISTER_TIMEOUT", label="register_timeout")
        try:
            return read.result()
        except StopAsyncIteration:
            raise bad_request("register", "stream closed before Register") from None

    async def _open_session(self, first: control_pb2.AgentMessage, ident: Identity,
                            slot: StreamSlot, context: Any) -> AgentSession:
        if first.WhichOneof("body") != "register":
            raise bad_request("register", f"first message must be Register, got {first.WhichOneof('body')}")
        reg = first.register
        check_register(reg)
        if reg.node_id != ident.name:
            raise error_info(grpc.StatusCode.PERMISSION_DENIED,
                             f"certificate of node {ident.name!r} may not register as node {reg.node_id!r}",
                             "NODE_ID_MISMATCH", label="node_id_mismatch", cn=ident.name,
                             node_id=reg.node_id)
        wire = records.register_to_wire(reg, ident.addresses)
        try:
            took = await self.call("register", wire)
        except BridgeError as exc:
            if exc.code != "permission":
                raise
            reason = str(exc.details.get("reason", "refused"))
            raise error_info(grpc.StatusCode.PERMISSION_DENIED, exc.message, "REGISTRATION_REFUSED",
                             label=reason, **{k: str(v) for k, v in exc.details.items()}) from None
        if slot.evicted.is_set():
            raise error_info(grpc.StatusCode.ABORTED, f"replaced by a newer control stream of "
                             f"{ident} while registering", "STREAM_REPLACED", label="replaced")
        session = AgentSession(reg.node_id, wire, str(ident))
        session.report_interval_ms = int(took.get("report_interval_ms") or options.REPORT_INTERVAL_MS)
        slot.session = session
        self._update_links(session, wire["links"])
        self.sessions.open(session)
        LOG.info("event=registered node=%s peer=%s links=%d saes=%d relay=%s", reg.node_id,
                 context.peer(), len(reg.links), len(reg.saes), reg.relay_addr)
        return session

    async def _read_stream(self, session: AgentSession,
                           stream: AsyncIterator[control_pb2.AgentMessage]) -> None:
        try:
            async for msg in stream:
                kind = msg.WhichOneof("body")
                if kind == "auth_ack":
                    session.acked(msg.auth_ack.path_id)
                elif kind == "report":
                    self._take_report(session, [records.link_to_wire(x) for x in msg.report.links])
                else:
                    LOG.warning("node %s sent %s on an open stream; ignored", session.node_id, kind)
        except asyncio.CancelledError:
            pass
        except grpc.RpcError:
            pass
        except Exception:  # noqa: BLE001
            LOG.exception("control stream of %s failed", session.node_id)
        finally:
            session.close()

    def _take_report(self, session: AgentSession, links: list[dict]) -> None:
        """Hand a report to the app without holding up the stream (an authorisation ack read
        behind it must not wait for the app): the newest waiting report replaces an older one,
        and what waited goes to the app in one batch (``ReportQueue``)."""
        self.reports.put(session, links)

    async def _send_reports(self, taken: Taken) -> None:
        batch = records.reports_to_wire([records.report_to_wire(s.node_id, links) for s, links in taken])
        try:
            result = await self.call("reports", batch)
        except BridgeError as exc:
            LOG.warning("%d reports (%s...) not delivered: %s", len(taken), taken[0][0].node_id, exc)
            return
        for (session, links), one in zip(taken, result.get("results", [])):
            if "error" in one:
                LOG.warning("report from %s refused: %s", session.node_id, one["error"].get("message"))
                continue
            self._report_taken(session, links, one)

    def _report_taken(self, session: AgentSession, links: list[dict], result: dict) -> None:
        self.metrics.reports.inc()
        dropped = {r["link_id"] for r in result.get("refused", [])}
        for r in result.get("refused", []):
            self.metrics.reports_refused.labels(r["reason"]).inc()
            if (r["link_id"], r["reason"]) not in session.refused_links:   # once per stream
                session.refused_links.add((r["link_id"], r["reason"]))
                LOG.warning("event=report_refused node=%s link=%s reason=%s msg=%r",
                            session.node_id, r["link_id"], r["reason"], r["message"])
        self._update_links(session, [x for x in links if x["link_id"] not in dropped])

    def _update_links(self, session: AgentSession, links: list[dict]) -> None:
        for link in links:
            link_id = link["link_id"]
            session.links[link_id] = link
            gauge = session.key_gauges.get(link_id)
            if gauge is None:   # labels() is a locked lookup: once per link and stream
                gauge = session.key_gauges[link_id] = self.metrics.key_bits.labels(session.node_id, link_id)
            gauge.set(link["stored_bits"])

    def _close_session(self, session: AgentSession) -> None:
        if self.sessions.closed(session):
            LOG.info("event=stream_closed node=%s gone_in_s=%.1f", session.node_id, self.gone_grace)

    def _gone(self, session: AgentSession) -> None:
        for link_id in session.links:
            try:
                self.metrics.key_bits.remove(session.node_id, link_id)
            except KeyError:
                pass
        LOG.info("event=node_gone node=%s", session.node_id)
        self.reports.drop(session.node_id)
        asyncio.ensure_future(self._tell_gone(session.node_id))

    async def _tell_gone(self, node_id: str) -> None:
        try:
            await self.call("gone", {"node_id": node_id})
        except BridgeError as exc:
            LOG.warning("gone for %s not delivered: %s", node_id, exc)

    # -- RequestPath / ReleasePath ------------------------------------------------------------
    @maps_errors(count="refused", event="path_refused", describe=_path)
    async def RequestPath(self, request: control_pb2.PathRequest, context: Any) -> control_pb2.PathReply:
        t0 = time.monotonic()
        self.metrics.requested.inc()
        try:
            reply, timing = await self._request_path(request, context)
        except (Abort, PathRefused) as exc:
            if not isinstance(exc, AppRefused):
                abort = rpc.to_abort(exc)
                self.note("path_refused", src=request.src_node, dst=request.dst_node,
                          src_sae=request.src_sae, dst_sae=request.dst_sae,
                          application=request.application, reason=abort.label,
                          message=abort.message, rule="")
            raise
        total = time.monotonic() - t0
        self.metrics.granted.inc()
        self.metrics.setup.observe(total)
        self.metrics.setup_app.observe(timing["app_ms"] / 1000)
        self.metrics.setup_auth.observe(timing["auth_ms"] / 1000)
        self.metrics.flows.inc(reply.flows_installed)
        LOG.info("event=path_granted src=%s dst=%s app=%s paths=%s rule=%s flows=%d ms=%.1f "
                 "app_ms=%.1f auth_ms=%.1f", request.src_node, request.dst_node, request.application,
                 ";".join(f"{p.path_id}:{'>'.join(h.node_id for h in p.hops)}" for p in reply.paths),
                 reply.rule, reply.flows_installed, total * 1000, timing["app_ms"], timing["auth_ms"])
        context.set_trailing_metadata((
            ("qusec-app-ms", f"{timing['app_ms']:.3f}"),
            ("qusec-auth-ms", f"{timing['auth_ms']:.3f}"),
            ("qusec-gateway-ms", f"{total * 1000:.3f}")))
        return reply

    async def _request_path(self, request: control_pb2.PathRequest,
                            context: Any) -> tuple[control_pb2.PathReply, dict]:
        ident = rpc.require_role(context, NODE, "request relay paths")
        if not request.src_node:
            raise bad_request("src_node", "required")
        if not request.dst_node and not request.dst_sae:
            raise bad_request("dst_node", "required (or dst_sae, for an SAE the node does not know)")
        if request.src_node == request.dst_node:
            raise bad_request("dst_node", "equals src_node")
        if ident.name != request.src_node:
            raise error_info(grpc.StatusCode.PERMISSION_DENIED,
                             f"certificate of node {ident.name!r} may not request paths for node "
                             f"{request.src_node!r}", "NODE_ID_MISMATCH", cn=ident.name,
                             node_id=request.src_node)
        wire = records.path_request_to_wire(request)
        result = await self._path_result(request, wire)
        if not result.get("granted"):
            reason, rule, message = records.refusal_from_wire(result)
            raise AppRefused(reason, f"path {request.src_node} -> {request.dst_node} refused "
                                      f"({reason}): {message}", rule=rule, message=message)
        t_auth = time.monotonic()
        try:
            await self._deliver(result.get("authorisations", []))
        except (Abort, PathRefused):
            for p in result.get("paths", []):
                try:
                    await self.call("release", records.release_to_wire(p["path_id"], request.src_node))
                except BridgeError as exc:
                    LOG.warning("release of undelivered path %s failed: %s", p["path_id"], exc)
            raise
        auth_ms = (time.monotonic() - t_auth) * 1000
        return records.path_reply_proto(result), {"app_ms": float(result.get("app_ms", 0.0)),
                                                  "auth_ms": auth_ms}

    async def _path_result(self, request: control_pb2.PathRequest, wire: dict) -> dict:
        """The app's answer to a path request. A slave SAE the agent does not know and this
        domain's last export did not offer goes to the parent first (one app call less); the
        app's own answer is asked only when that fails (an SAE of this domain kept from others)."""
        link = self.parent_link
        if link is None or request.dst_node or not request.dst_sae or not link.foreign(request.dst_sae):
            result = await self.call("request_path", wire)
            if handoff_wanted(request, result, link is not None):
                result = await self._handoff_path(request, wire)
            return result
        refused = None
        try:
            result = await self._handoff_path(request, wire)
            if result.get("granted"):
                return result
        except PathRefused as exc:
            result, refused = {}, exc
        own = await self.call("request_path", wire)
        if own.get("granted") or own.get("refusal") != "unknown_sae":
            return own
        if refused is not None:
            raise refused
        return result

    async def _handoff_path(self, request: control_pb2.PathRequest, wire: dict) -> dict:
        """The slave SAE is another domain's: the parent chooses the chain of domains, and the
        app grants the path from the source to this domain's exit KME of the chain's first
        crossing, where the key is handed off (the result carries the handoff). While the parent
        chooses, the app already grants the segment toward the last chain's exit: used when the
        new chain leaves there too, else released unseen (no authorisation left the gateway)."""
        link = self.parent_link
        bits = max(1, request.key_size_bits or 256) * max(1, request.key_count or 1)
        guess = link.last_handoff(request.src_node, request.dst_sae)
        early = asyncio.ensure_future(self.call("request_path", dict(wire, dst_node=guess["exit_node"],
                                                                     handoff=guess))) if guess else None
        try:
            try:
                chain = await link.choose(request.src_node, request.dst_sae, bits)
            except ParentRefused as exc:
                raise PathRefused(parent_refusal(exc.reason), f"path {request.src_node} -> SAE "
                                  f"{request.dst_sae} refused: the parent controller answered "
                                  f"{exc.reason}: {exc}", message=f"parent controller: {exc.reason}: {exc}") from None
            handoff = handoff_of(chain)
        except BaseException:
            await self._unused(early, request.src_node)
            raise
        link.remember_handoff(request.src_node, request.dst_sae, handoff)
        LOG.info("event=chain src=%s dst_sae=%s domains=%s via=%s", request.src_node, request.dst_sae,
                 ",".join(sg.domain for sg in chain.segments), ",".join(x.id for x in chain.crossings))
        if early is not None and handoff == guess:
            result = await early
        else:
            await self._unused(early, request.src_node)
            result = await self.call("request_path", dict(wire, dst_node=handoff["exit_node"], handoff=handoff))
        if result.get("granted"):
            result["handoff"] = handoff
            if chain.security != "qkd":   # the key's level is the chain's weakest crossing's
                result["security_level"] = chain.security
        return result

    async def _unused(self, early: asyncio.Future | None, src_node: str) -> None:
        """Release the paths of an early grant the chain did not take."""
        if early is None:
            return
        try:
            result = await early
        except BridgeError:
            return
        for p in result.get("paths", []) if result.get("granted") else ():
            try:
                await self.call("release", records.release_to_wire(p["path_id"], src_node))
            except BridgeError as exc:
                LOG.warning("release of unused path %s failed: %s", p["path_id"], exc)

    async def _deliver(self, auths: list[dict]) -> None:
        """Push every authorisation down its node's stream and wait for all the acks."""
        sessions = {n: self.sessions.get(n) for n in {a["node_id"] for a in auths}}
        missing = sorted(n for n, s in sessions.items() if s is None)
        if missing:
            raise PathRefused("disconnected",
                              f"no control stream from node(s) {', '.join(missing)} on the path",
                              message=f"not connected: {', '.join(missing)}")
        # One future for the whole path, set by the last ack (a path of 60 hops waited on 60
        # events, each with a wait_for task of its own, on the loop every push and ack shares).
        all_acked = asyncio.get_running_loop().create_future()
        waiting: dict[tuple[str, str], AgentSession] = {}

        def on_ack(key: tuple[str, str]) -> None:
            waiting.pop(key, None)
            if not waiting and not all_acked.done():
                all_acked.set_result(None)
        for a in auths:
            key = (a["node_id"], a["auth"]["path_id"])
            waiting[key] = sessions[a["node_id"]]
        for a in auths:
            key = (a["node_id"], a["auth"]["path_id"])
            waiting[key].expect_ack(key[1], lambda key=key: on_ack(key))
            waiting[key].send(records.authorise_proto(a["auth"]))
        try:
            if waiting:
                await asyncio.wait((all_acked,), timeout=self.ack_timeout)
        finally:   # acks not come by now (or the caller gone) are waited for no longer
            late = {node for node, _ in waiting}
            for (_, path_id), session in waiting.items():
                session.forget_ack(path_id)
        if late:
            raise error_info(grpc.StatusCode.DEADLINE_EXCEEDED,
                             f"authorisation not acknowledged within {self.ack_timeout:.1f}s by "
                             f"{', '.join(sorted(late))}", "AUTH_NOT_ACKED", nodes=",".join(sorted(late)))

    @maps_errors(count="release_refused", event="release_refused", describe=_release)
    async def ReleasePath(self, request: control_pb2.ReleaseRequest,
                          context: Any) -> control_pb2.ReleaseReply:
        ident = rpc.require_role(context, NODE, "release relay paths")
        if not request.path_id:
            raise bad_request("path_id", "required")
        try:
            result = await self.call("release", records.release_to_wire(request.path_id, ident.name))
        except BridgeError as exc:
            if exc.code != "permission":
                raise
            raise error_info(grpc.StatusCode.PERMISSION_DENIED, exc.message, "NOT_PATH_SOURCE",
                             label=str(exc.details.get("reason", "not_source")), node_id=ident.name,
                             path_id=request.path_id) from None
        return control_pb2.ReleaseReply(released=bool(result.get("released")))
