"""ETSI GS QKD 004-style key streams over gRPC: OPEN_CONNECT / GET_KEY / CLOSE with the spec's status codes.

:class:`KeyStreams` holds the logic (rendezvous of the two applications through their
vKMSs, QoS negotiation, chunk production); :class:`Etsi004Servicer` is the thin gRPC
adapter, served on ``grpc.aio``: a call that waits (for the peer application, for key)
holds no thread and stops waiting as soon as its client cancels, and blocking work
(the key store, key delivery, calls to neighbours) runs in a small executor. What one
SAE may hold is capped (``[caps]``): calls in progress and streams open; a stream the
other application never joins, or that nobody uses, ends by itself.

The node of the *source* SAE produces every chunk: it takes the key (local, direct link
or relay) so that chunk ``i`` is identical at both ends, delivers it to the destination's
node and keeps its own copy until its application fetches it. Chunks are deleted once
delivered. Statuses 0-8 are returned in the response; requests that are malformed, name
an unknown stream or exceed a cap get a gRPC error with a message.

The two nodes meet over ``PeerKms.StreamEvent``. An event's origin node is the neighbour
that called (its TLS identity), never what the message says; an event for a node further
away travels hop by hop and carries its origin's signature (node certificate and key),
which the target checks, so no node on the way can speak for another.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import functools
import json
import logging
import os
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from kms_agents import metrics, rpc
from kms_agents.channels import PeerUnavailable
from kms_agents.config import Caps
from kms_agents.identity import IdentityError, NodeIdentity, check_peer_cert, verify
from kms_agents.keyrequest import KeyServiceError
from kms_agents.keystore import DuplicateKey, StoredKey
from kms_agents.proto import etsi004_pb2 as pb
from kms_agents.proto import etsi004_pb2_grpc as pb_grpc
from kms_agents.proto import peer_pb2
from kms_agents.relayer import NoRelayer
from kms_agents.service import KeyService

log = logging.getLogger(__name__)

S = pb.Status
DEFAULT_CHUNK = 32
MIMETYPE = "application/json"
POLL_S = 0.05                 # how often a GetKey waiting for link key looks again
WORKERS = 16                  # executor threads for the blocking part of calls
SWEEP_EVERY_S = 1.0           # ended streams are looked for at most this often
EVENT_MAX_AGE_S = 60.0        # a signed (relayed) stream event older than this is refused
_EVENT_TAG = b"qusec-stream-event/1"


def out_of_key(exc: KeyServiceError) -> bool:
    """Whether a failed delivery ran out of link key (direct link, or a relay hop / QuSeC's no_key)."""
    return exc.status == 503 and ("not enough key" in exc.message or any(
        d.get("qusec_relay_status") == "RESOURCE_EXHAUSTED" for d in exc.details or [] if isinstance(d, dict)))


class StreamError(rpc.Abort):
    """A request that is not a spec status but an error (unknown stream, wrong caller, bad index, a cap)."""


@dataclass
class Stream:
    ksid: str
    source: str
    destination: str
    chunk: int
    ttl: int
    opener: str = ""                                        # the SAE whose OPEN_CONNECT made it (caps)
    open: dict[str, bool] = field(default_factory=dict)   # SAE -> its application has the stream open
    produced: set[int] = field(default_factory=set)        # producer: indices already made
    fetched: set[tuple[str, int]] = field(default_factory=set)  # (SAE, index) fetched by the local app(s)
    timeout_ms: dict[str, int] = field(default_factory=dict)  # SAE -> its QoS Timeout (GetKey waits this long)
    opened_at: float = 0.0                                  # the stream ends ``ttl`` s after this (0: never)
    created: float = field(default_factory=time.monotonic)
    used: float = field(default_factory=time.monotonic)     # the last call or event on it
    joined: bool = False                                    # both applications have opened it
    produce_lock: threading.Lock = field(default_factory=threading.Lock)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list)

    def set_open(self, sae: str, value: bool) -> None:
        """An application opened (or closed) the stream; wakes whoever waits on it."""
        with self._lock:
            self.open[sae] = value
            if self.open.get(self.source) and self.open.get(self.destination):
                self.joined = True
            waiters = list(self._waiters)
        for loop, ev in waiters:
            with contextlib.suppress(RuntimeError):   # the waiting loop is gone
                loop.call_soon_threadsafe(ev.set)

    async def until(self, predicate: Callable[[], bool], deadline: float) -> bool:
        """Wait (holding no thread) until ``predicate()`` or the monotonic ``deadline``."""
        loop = asyncio.get_running_loop()
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            entry = (loop, asyncio.Event())
            with self._lock:
                self._waiters.append(entry)
            try:
                if predicate():
                    return True
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(entry[1].wait(), left)
            finally:
                with self._lock:
                    self._waiters.remove(entry)
        return True


def sae_from_uri(uri: str) -> str:
    """``qkd://sae-a`` (or any ``scheme://sae-a``, or plain ``sae-a``) -> ``sae-a``."""
    return uri.split("://", 1)[1].strip("/") if "://" in uri else uri.strip()


def event_body(ev: peer_pb2.StreamEventRequest) -> bytes:
    """What the origin of a relayed stream event signs: every field but the hop limit."""
    parts = [_EVENT_TAG, *(str(v).encode() for v in (
        ev.kind, ev.key_stream_id, ev.source, ev.destination, ev.key_chunk_size, ev.index, ev.ttl,
        ev.origin_node, ev.target_node, ev.sent_unix_ms))]
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


class KeyStreams:
    """Key streams of one node (in memory; their chunks live in the durable key store).

    ``identity`` (this node's certificate and key) signs events for non-neighbours and
    checks those relayed to this node; without it, only neighbours' events are taken.
    """

    def __init__(self, service: KeyService, send_event: Callable[[str, peer_pb2.StreamEventRequest],
                                                                  peer_pb2.StreamEventReply] | None,
                 clock: Callable[[], float] = time.time, graph: dict[str, list[str]] | None = None, *,
                 identity: NodeIdentity | None = None, caps: Caps | None = None,
                 executor: Executor | None = None) -> None:
        self.service = service
        self.delivery = service.delivery   # makes each chunk: local, direct link or relay
        self.node = service.node_id
        self.send_event = send_event     # to a neighbour's PeerKms.StreamEvent
        self.clock = clock
        self.graph = graph or {}
        self.identity = identity
        self.caps = caps or Caps()
        self._executor = executor or ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="etsi004")
        self._streams: dict[str, Stream] = {}
        self._calls: Counter[str] = Counter()   # SAE -> its calls in progress
        self._swept = 0.0
        self._lock = threading.Lock()

    def close_executor(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- event routing: neighbours directly, other nodes hop by hop over the QKD graph ------
    def next_hop(self, target: str) -> str | None:
        """The neighbour to send an event for ``target`` to (shortest path, ties by name), or None."""
        neighbours = set(self.delivery.neighbours())
        if target in neighbours:
            return target
        prev: dict[str, str] = {self.node: self.node}
        frontier = [self.node]
        while frontier and target not in prev:
            nxt = []
            for n in frontier:
                hops = neighbours if n == self.node else self.graph.get(n, [])
                for m in sorted(hops):
                    if m not in prev:
                        prev[m] = n
                        nxt.append(m)
            frontier = nxt
        if target not in prev:
            return None
        while prev[target] != self.node:
            target = prev[target]
        return target

    def _send(self, target: str, ev: peer_pb2.StreamEventRequest) -> peer_pb2.StreamEventReply:
        hop = self.next_hop(target)
        if hop is None or self.send_event is None:
            raise PeerUnavailable(f"no route from node {self.node} to node {target} for key-stream events")
        if not ev.origin_node:
            ev.origin_node, ev.target_node = self.node, target
            ev.hop_limit = max(2, len(self.graph) or 16)
            if hop != target:   # other nodes pass it on: sign it, they cannot speak for us
                if self.identity is None:
                    raise PeerUnavailable(f"node {self.node} has no TLS identity to sign key-stream events "
                                          f"for node {target} (not a neighbour)")
                ev.sent_unix_ms = int(self.clock() * 1000)
                ev.origin_cert = self.identity.cert_der
                ev.origin_signature = self.identity.sign(event_body(ev))
        return self.send_event(hop, ev)

    def on_peer_event(self, caller_node: str, ev: peer_pb2.StreamEventRequest) -> peer_pb2.StreamEventReply:
        """An event from a neighbour's agent (``caller_node``: its TLS identity): for this node, or
        to pass on toward its target."""
        if caller_node not in self.delivery.neighbours():
            raise ValueError(f"key-stream events are accepted from neighbouring nodes only, not {caller_node!r}")
        if ev.target_node and ev.target_node != self.node:
            if ev.hop_limit <= 1:
                raise ValueError(f"key-stream event for node {ev.target_node} ran out of hops at {self.node}")
            ev.hop_limit -= 1
            try:
                return self._send(ev.target_node, ev)
            except PeerUnavailable as exc:
                return peer_pb2.StreamEventReply(status=S.NO_QKD_CONNECTION, message=str(exc))
        return self.on_event(self._origin(caller_node, ev), ev)

    def _origin(self, caller_node: str, ev: peer_pb2.StreamEventRequest) -> str:
        """The node an event comes from: the calling neighbour, or the signed origin of a relayed one."""
        origin = ev.origin_node or caller_node
        if origin == caller_node:
            return origin
        try:
            if self.identity is None:
                raise IdentityError("this node has no TLS identity to check it")
            age = abs(self.clock() * 1000 - ev.sent_unix_ms) / 1000
            if age > EVENT_MAX_AGE_S:
                raise IdentityError(f"signed {age:.0f} s away from now (at most {EVENT_MAX_AGE_S:g})")
            cert = check_peer_cert(ev.origin_cert, self.identity.ca, "node", origin,
                                   _dt.datetime.fromtimestamp(self.clock(), _dt.timezone.utc))
            verify(cert, ev.origin_signature, event_body(ev))
        except IdentityError as exc:
            message = (f"key-stream event relayed by node {caller_node} claims origin node {origin}, "
                       f"which it does not prove: {exc}")
            metrics.refused("peer", "event_origin", message, logger=log, caller=f"node:{caller_node}")
            raise ValueError(message) from None
        return origin

    # -- helpers ------------------------------------------------------------------------
    def _node_of(self, sae: str) -> str | None:
        return self.service.saes.get(sae)

    async def _run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    @contextlib.contextmanager
    def _call(self, caller: str) -> Iterator[None]:
        """One call of ``caller`` in progress, within its cap."""
        cap = self.caps.etsi004_calls_per_sae
        with self._lock:
            busy = self._calls[caller] >= cap
            if not busy:
                self._calls[caller] += 1
        if busy:
            message = f"SAE {caller!r} has {cap} ETSI 004 calls in progress (the most it may)"
            metrics.refused("etsi004", "calls_per_sae", message, logger=log, caller=f"sae:{caller}")
            raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
        try:
            yield
        finally:
            with self._lock:
                self._calls[caller] -= 1
                if self._calls[caller] <= 0:
                    del self._calls[caller]

    def _stream(self, ksid: str, caller: str) -> Stream:
        self.sweep()
        with self._lock:
            st = self._streams.get(ksid)
        if st is None:
            raise StreamError(grpc.StatusCode.NOT_FOUND, f"unknown key stream {ksid!r} on node {self.node}")
        if st.ttl and self.clock() - st.opened_at > st.ttl:
            self._expire(st, "ttl")
            raise StreamError(grpc.StatusCode.NOT_FOUND, f"key stream {ksid!r} expired (QoS TTL {st.ttl} s)")
        if caller not in (st.source, st.destination) or self._node_of(caller) != self.node:
            raise StreamError(grpc.StatusCode.PERMISSION_DENIED, f"SAE {caller!r} is not an application of "
                                                                 f"key stream {ksid!r} on this node")
        st.used = time.monotonic()
        return st

    def _expire(self, st: Stream, why: str) -> None:
        """Forget a stream that ended (TTL, never joined, unused), and its chunks not yet fetched here."""
        with self._lock:
            if self._streams.get(st.ksid) is not st:
                return
            del self._streams[st.ksid]
        log.info("event=stream_ended ksid=%s why=%s opener=%s", st.ksid, why, st.opener)
        prefix = st.ksid + "#"
        for sae in (st.source, st.destination):
            if self._node_of(sae) == self.node:
                self.service.store.discard(k for k in self.service.store.pending_ids(st.source, sae)
                                           if k.startswith(prefix))

    def _ended(self, st: Stream, mono: float) -> str:
        """Why a stream has ended by itself ("" while it lives)."""
        if st.ttl and self.clock() - st.opened_at > st.ttl:
            return "ttl"
        wait_s = max([self.caps.etsi004_join_s, *(t / 1000 for t in st.timeout_ms.values())])
        if not st.joined and mono - st.created > wait_s:
            return "never_joined"
        if mono - st.used > max(self.caps.etsi004_idle_s, wait_s):
            return "idle"
        return ""

    def sweep(self, force: bool = False) -> int:
        """End the streams that ended by themselves (at most once a second unless ``force``)."""
        mono = time.monotonic()
        with self._lock:
            if not force and mono - self._swept < SWEEP_EVERY_S:
                return 0
            self._swept = mono
            ended = [(st, why) for st in self._streams.values() if (why := self._ended(st, mono))]
        for st, why in ended:
            self._expire(st, why)
        return len(ended)

    def _new_stream(self, st: Stream) -> Stream:
        """Register ``st`` unless its opener is at its cap (raises StreamError); returns the stream
        registered under its ID (an existing one wins)."""
        cap = self.caps.etsi004_streams_per_sae
        for attempt in (0, 1):
            with self._lock:
                existing = self._streams.get(st.ksid)
                if existing is not None:
                    return existing
                held = sum(1 for s in self._streams.values() if s.opener == st.opener)
                if held < cap:
                    self._streams[st.ksid] = st
                    return st
            if not attempt:
                self.sweep(force=True)   # ended streams do not count
        message = f"SAE {st.opener!r} has {cap} key streams open (the most it may); close some first"
        metrics.refused("etsi004", "streams_per_sae", message, logger=log, caller=f"sae:{st.opener}")
        raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    def _reachable(self, other_node: str) -> bool:
        if other_node == self.node or self.delivery.links_to(other_node):
            return True
        if isinstance(self.delivery.relayer, NoRelayer) or self.next_hop(other_node) is None:
            return False
        try:
            self.delivery.relayer.stored_key_count(other_node, self.service.limits.key_size)
        except KeyServiceError:
            return False
        return True

    def _counter_proposal(self, qos: pb.QoS, other_node: str) -> pb.QoS | None:
        lim = self.service.limits
        proposal = pb.QoS()
        proposal.CopyFrom(qos)
        changed = False
        if not lim.min_key_size <= proposal.key_chunk_size * 8 <= lim.max_key_size:
            proposal.key_chunk_size = min(max(proposal.key_chunk_size, lim.min_key_size // 8), lim.max_key_size // 8)
            changed = True
        if proposal.metadata_mimetype not in ("", MIMETYPE):
            proposal.metadata_mimetype = MIMETYPE
            changed = True
        links = self.delivery.links_to(other_node)
        if links:
            rate = int(max(lk.rate_bps for lk in links) / 2)
            if proposal.min_bps > rate:
                proposal.min_bps = rate
                proposal.max_bps = min(proposal.max_bps or rate, rate)
                changed = True
        return proposal if changed else None

    # -- OPEN_CONNECT ------------------------------------------------------------------------
    async def open_connect(self, caller: str, req: pb.OpenConnectRequest) -> pb.OpenConnectResponse:
        """OPEN_CONNECT: reserve the stream here (and tell the other node), then wait up to the
        QoS timeout for the other application (holding no thread; a cancelled call stops waiting)."""
        with self._call(caller):
            opened = await self._run(self._open, caller, req)
            if isinstance(opened, pb.OpenConnectResponse):
                return opened
            st, other, qos = opened
            connected = await st.until(lambda: bool(st.open.get(other)), time.monotonic() + qos.timeout / 1000)
            return pb.OpenConnectResponse(status=S.SUCCESSFUL if connected else S.PEER_NOT_CONNECTED,
                                          key_stream_id=st.ksid, qos=qos)

    def _open(self, caller: str, req: pb.OpenConnectRequest
              ) -> pb.OpenConnectResponse | tuple[Stream, str, pb.QoS]:
        src, dst = sae_from_uri(req.source), sae_from_uri(req.destination)
        if caller not in (src, dst):
            raise StreamError(grpc.StatusCode.PERMISSION_DENIED,
                              f"SAE {caller!r} may only open streams it is the source or destination of "
                              f"(source={src!r}, destination={dst!r})")
        if self._node_of(caller) != self.node:
            raise StreamError(grpc.StatusCode.PERMISSION_DENIED, f"SAE {caller!r} is not attached to node {self.node}")
        self.sweep()
        other = dst if caller == src else src
        other_node = self._node_of(other)
        qos = pb.QoS()
        qos.CopyFrom(req.qos)
        if not qos.key_chunk_size:
            qos.key_chunk_size = DEFAULT_CHUNK
        if not qos.metadata_mimetype:
            qos.metadata_mimetype = MIMETYPE
        if other_node is None or src == dst or not self._reachable(other_node):
            return pb.OpenConnectResponse(status=S.NO_QKD_CONNECTION, key_stream_id=req.key_stream_id, qos=qos)
        proposal = self._counter_proposal(qos, other_node)
        if proposal is not None:
            return pb.OpenConnectResponse(status=S.QOS_NOT_MET, key_stream_id=req.key_stream_id, qos=proposal)
        ksid = req.key_stream_id or str(uuid.uuid4())
        st = self._new_stream(Stream(ksid, src, dst, qos.key_chunk_size, qos.ttl, opener=caller,
                                     opened_at=self.clock()))
        with self._lock:
            if st.open.get(caller) or (st.source, st.destination) != (src, dst) or st.chunk != qos.key_chunk_size:
                return pb.OpenConnectResponse(status=S.KEY_STREAM_ID_IN_USE, key_stream_id=ksid, qos=qos)
            st.timeout_ms[caller] = qos.timeout
        st.used = time.monotonic()
        st.set_open(caller, True)
        if other_node != self.node:
            try:
                reply = self._send(other_node, peer_pb2.StreamEventRequest(
                    kind=peer_pb2.OPENED, key_stream_id=ksid, source=src, destination=dst,
                    key_chunk_size=qos.key_chunk_size, ttl=qos.ttl))
            except PeerUnavailable as exc:
                log.warning("key stream %s: node %s unreachable: %s", ksid, other_node, exc)
                self._forget(ksid, caller)
                return pb.OpenConnectResponse(status=S.NO_QKD_CONNECTION, key_stream_id=ksid, qos=qos)
            if reply.status != S.SUCCESSFUL:
                self._forget(ksid, caller)
                return pb.OpenConnectResponse(status=reply.status, key_stream_id=ksid, qos=qos)
            if reply.peer_connected:
                st.set_open(other, True)
        return st, other, qos

    def _forget(self, ksid: str, caller: str) -> None:
        with self._lock:
            st = self._streams.get(ksid)
            if st is not None:
                st.open.pop(caller, None)
                if not any(st.open.values()):
                    self._streams.pop(ksid, None)

    # -- events from the other application's node -----------------------------------------
    def on_event(self, from_node: str, ev: peer_pb2.StreamEventRequest) -> peer_pb2.StreamEventReply:
        remote = ev.source if self._node_of(ev.source) == from_node else ev.destination
        local = ev.destination if remote == ev.source else ev.source
        if self._node_of(remote) != from_node or self._node_of(local) != self.node:
            raise ValueError(f"key stream {ev.key_stream_id!r}: node {from_node} does not serve {ev.source!r} "
                             f"or {ev.destination!r} is not on node {self.node}")
        if ev.kind == peer_pb2.OPENED:
            self.sweep()
            st = self._new_stream(Stream(ev.key_stream_id, ev.source, ev.destination, ev.key_chunk_size, ev.ttl,
                                         opener=remote, opened_at=self.clock()))
            if (st.source, st.destination, st.chunk) != (ev.source, ev.destination, ev.key_chunk_size):
                return peer_pb2.StreamEventReply(status=S.KEY_STREAM_ID_IN_USE,
                                                 message="key stream ID in use with other parameters")
            st.used = time.monotonic()
            st.set_open(remote, True)
            return peer_pb2.StreamEventReply(status=S.SUCCESSFUL, peer_connected=bool(st.open.get(local)))
        with self._lock:
            st = self._streams.get(ev.key_stream_id)
        if st is None:
            return peer_pb2.StreamEventReply(status=S.PEER_APPLICATION_NOT_CONNECTED, message="no such key stream")
        if (ev.source, ev.destination) != (st.source, st.destination):
            raise ValueError(f"key stream {st.ksid!r} is {st.source} -> {st.destination}, not "
                             f"{ev.source} -> {ev.destination}")
        st.used = time.monotonic()
        if ev.kind == peer_pb2.CLOSED:
            st.set_open(remote, False)
            if not any(st.open.values()):
                with self._lock:
                    self._streams.pop(ev.key_stream_id, None)
            return peer_pb2.StreamEventReply(status=S.SUCCESSFUL)
        if ev.kind == peer_pb2.CHUNK:
            if self._node_of(st.source) != self.node:
                raise ValueError(f"key stream {st.ksid}: node {self.node} does not produce its chunks")
            return peer_pb2.StreamEventReply(status=self._produce(st, ev.index))
        raise ValueError(f"unknown stream event kind {ev.kind}")

    # -- GET_KEY -----------------------------------------------------------------------------
    @staticmethod
    def chunk_id(ksid: str, index: int) -> str:
        return f"{ksid}#{index}"

    def _produce(self, st: Stream, index: int) -> int:
        """Make chunk ``index`` at both ends (producer only); returns a 004 status."""
        with st.produce_lock:
            if index in st.produced:
                return S.SUCCESSFUL
            kid = self.chunk_id(st.ksid, index)
            try:
                if self._node_of(st.destination) == self.node:   # both applications here
                    self.service.store.put([StoredKey(kid, st.source, [st.source, st.destination],
                                                      os.urandom(st.chunk), self.clock(),
                                                      {"qusec_route_type": "local", "qusec_hops": 0})])
                else:
                    got = self.delivery.deliver(st.source, [st.destination], [kid], st.chunk * 8,
                                                extensions={"qusec_key_stream_id": st.ksid})[0]
                    self.service.store.put([StoredKey(kid, st.source, [st.source], got.material, self.clock(),
                                                      got.extension)])
            except KeyServiceError as exc:
                log.info("key stream %s chunk %d: %s", st.ksid, index, exc.message)
                return S.INSUFFICIENT_KEY if out_of_key(exc) else S.NO_QKD_CONNECTION
            except DuplicateKey:
                pass
            st.produced.add(index)
            return S.SUCCESSFUL

    def _ensure_chunk(self, st: Stream, index: int) -> int:
        kid = self.chunk_id(st.ksid, index)
        if self.service.store.peek(kid) is not None:
            return S.SUCCESSFUL
        if self._node_of(st.source) == self.node:
            return self._produce(st, index)
        try:
            reply = self._send(self._node_of(st.source), peer_pb2.StreamEventRequest(
                kind=peer_pb2.CHUNK, key_stream_id=st.ksid, source=st.source, destination=st.destination,
                key_chunk_size=st.chunk, index=index))
        except PeerUnavailable as exc:
            log.warning("key stream %s: producer unreachable: %s", st.ksid, exc)
            return S.NO_QKD_CONNECTION
        return reply.status

    async def get_key(self, caller: str, req: pb.GetKeyRequest) -> pb.GetKeyResponse:
        """GET_KEY: the chunk at ``req.index``; out of key, it looks again until the caller's QoS
        timeout (holding no thread in between)."""
        with self._call(caller):
            started = time.monotonic()
            while True:
                got = await self._run(self._try_get_key, caller, req, started)
                if got is not None:
                    return got
                await asyncio.sleep(POLL_S)

    def _try_get_key(self, caller: str, req: pb.GetKeyRequest, started: float) -> pb.GetKeyResponse | None:
        """One attempt at GET_KEY; None: no key yet and the caller's timeout has not run out."""
        st = self._stream(req.key_stream_id, caller)
        other = st.destination if caller == st.source else st.source
        if not st.open.get(caller):
            raise StreamError(grpc.StatusCode.FAILED_PRECONDITION, f"key stream {st.ksid!r} is closed")
        if not st.open.get(other):
            return pb.GetKeyResponse(status=S.PEER_APPLICATION_NOT_CONNECTED, index=req.index)
        if (caller, req.index) in st.fetched:
            raise StreamError(grpc.StatusCode.OUT_OF_RANGE, f"chunk {req.index} of key stream {st.ksid!r} was "
                                                            "already delivered (keys are never handed out twice)")
        st_timeout = st.timeout_ms.get(caller, 0) / 1000
        status = self._ensure_chunk(st, req.index)
        if status == S.INSUFFICIENT_KEY and time.monotonic() < started + st_timeout:
            return None
        if status == S.INSUFFICIENT_KEY and st_timeout > 0:
            return pb.GetKeyResponse(status=S.TIMEOUT, index=req.index)
        if status != S.SUCCESSFUL:
            return pb.GetKeyResponse(status=status, index=req.index)
        kid = self.chunk_id(st.ksid, req.index)
        stored = self.service.store.peek(kid)
        if stored is None:
            return pb.GetKeyResponse(status=S.INSUFFICIENT_KEY, index=req.index)
        meta = json.dumps({"hops": int(stored.meta.get("qusec_hops", 0)),
                           "age": int(max(0.0, self.clock() - stored.created) * 1000),
                           "route_type": stored.meta.get("qusec_route_type", ""),
                           "security_level": stored.meta.get("qusec_security_level", "qkd")},
                          separators=(",", ":")).encode()
        if req.metadata.size < len(meta):
            return pb.GetKeyResponse(status=S.METADATA_SIZE_INSUFFICIENT, index=req.index,
                                     metadata=pb.Metadata(size=len(meta), mimetype=MIMETYPE))
        got = self.service.store.fetch(st.source, caller, [kid])[0]
        st.fetched.add((caller, req.index))
        return pb.GetKeyResponse(status=S.SUCCESSFUL, key_buffer=got.material, index=req.index,
                                 metadata=pb.Metadata(size=len(meta), mimetype=MIMETYPE, buffer=meta))

    # -- CLOSE ------------------------------------------------------------------------------
    async def close(self, caller: str, ksid: str) -> pb.CloseResponse:
        with self._call(caller):
            return await self._run(self._close, caller, ksid)

    def _close(self, caller: str, ksid: str) -> pb.CloseResponse:
        st = self._stream(ksid, caller)
        st.set_open(caller, False)
        prefix = ksid + "#"
        self.service.store.discard(k for k in self.service.store.pending_ids(st.source, caller)
                                   if k.startswith(prefix))
        other = st.destination if caller == st.source else st.source
        other_node = self._node_of(other)
        if other_node != self.node:
            try:
                self._send(other_node, peer_pb2.StreamEventRequest(
                    kind=peer_pb2.CLOSED, key_stream_id=ksid, source=st.source, destination=st.destination))
            except PeerUnavailable as exc:
                log.info("key stream %s: could not tell node %s about CLOSE: %s", ksid, other_node, exc)
        if not any(st.open.values()):
            with self._lock:
                self._streams.pop(ksid, None)
        return pb.CloseResponse(status=S.SUCCESSFUL)


UNAUTHENTICATED = "a client certificate naming the SAE is required"


def counted(fn: Callable) -> Callable:
    """Count every answered call of an aio gRPC method ``fn(self, request, context)`` by method and
    gRPC status code (``qusec_agent_requests_total{api="etsi004"}``), an answer also by the ETSI 004
    status it carries; a chunk handed out counts as delivered."""
    @functools.wraps(fn)
    async def call(self: Any, request: Any, context: Any) -> Any:
        try:
            reply = await fn(self, request, context)
        except asyncio.CancelledError:
            metrics.requests("etsi004", fn.__name__, "CANCELLED")
            raise
        except BaseException:
            # context.abort() raised: the status it set is the call's (UNKNOWN if none was)
            code = context.code() if hasattr(context, "code") else None
            metrics.requests("etsi004", fn.__name__, metrics.grpc_status(code or grpc.StatusCode.UNKNOWN))
            raise
        chunk = len(reply.key_buffer) if isinstance(reply, pb.GetKeyResponse) and reply.status == S.SUCCESSFUL else 0
        metrics.requests("etsi004", fn.__name__, "OK", keys=1 if chunk else 0, key_bits=8 * chunk)
        metrics.etsi004_answered(fn.__name__, S.Name(reply.status))
        return reply
    return call


class Etsi004Servicer(pb_grpc.KeyDeliveryServicer):
    """aio gRPC adapter: the calling SAE is the one its client certificate names (role sae only)."""

    def __init__(self, streams: KeyStreams) -> None:
        self.streams = streams

    @counted
    @rpc.method(role="sae", server="etsi004", unauthenticated=UNAUTHENTICATED)
    async def OpenConnect(self, request: pb.OpenConnectRequest, caller: str) -> pb.OpenConnectResponse:
        return await self.streams.open_connect(caller, request)

    @counted
    @rpc.method(role="sae", server="etsi004", unauthenticated=UNAUTHENTICATED)
    async def GetKey(self, request: pb.GetKeyRequest, caller: str) -> pb.GetKeyResponse:
        return await self.streams.get_key(caller, request)

    @counted
    @rpc.method(role="sae", server="etsi004", unauthenticated=UNAUTHENTICATED)
    async def Close(self, request: pb.CloseRequest, caller: str) -> pb.CloseResponse:
        return await self.streams.close(caller, request.key_stream_id)
