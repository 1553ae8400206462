"""External keys in the agent's key store (the same SQLite file, its transactions and its wipe).

Three tables: ``etsi020_rx`` (keys a peer KME passed us: the material until it is relayed,
then only the key's state, so a later void is answered right), ``etsi020_tx`` (keys we passed
a peer: the material until the peer's ack settles them, since a retry re-sends the same values)
and ``etsi020_outbox`` (acks and voids still to be delivered: key IDs and states, never key
material). A relayed key moves into the key store's end-to-end table in the same transaction
that marks it relayed: it is deliverable over ETSI 014 exactly when it is ``relayed``. Rows
without material are forgotten after ``retention_s``.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kms_agents.etsi020 import rules
from kms_agents.etsi020.model import ExtKey, ExtKeyRequest, Outcome, ack_calls
from kms_agents.keystore import KeyStore, StoredKey

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS etsi020_rx (
        key_id TEXT PRIMARY KEY, peer TEXT NOT NULL, initiator TEXT NOT NULL, targets TEXT NOT NULL,
        material BLOB, state TEXT NOT NULL, callback TEXT, extension TEXT, created REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS etsi020_rx_peer ON etsi020_rx (peer, initiator)",
    """CREATE TABLE IF NOT EXISTS etsi020_tx (
        key_id TEXT PRIMARY KEY, peer TEXT NOT NULL, initiator TEXT NOT NULL, targets TEXT NOT NULL,
        material BLOB, state TEXT NOT NULL, attempts INTEGER NOT NULL, due REAL NOT NULL,
        created REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS etsi020_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, peer TEXT NOT NULL, url TEXT NOT NULL, kind TEXT NOT NULL,
        body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, due REAL NOT NULL)""",
)

ACK, VOID_ACK, VOID = "ack", "void_ack", "void"   # outbox kinds


class KeyIdInUse(ValueError):
    """A key ID already held here for another peer, or held with another value."""


class TooMuchWaiting(Exception):
    """A peer's keys and callbacks waiting here would exceed its bound."""


@dataclass(frozen=True)
class SentKey:
    key_id: str
    peer: str
    initiator: str
    targets: tuple[str, ...]
    material: bytes | None
    state: str
    attempts: int
    due: float

    def __repr__(self) -> str:
        return f"SentKey({self.key_id}, {self.peer}, {self.state})"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    peer: str
    url: str
    kind: str
    body: object
    attempts: int


class ExtKeyStore:
    """The GS QKD 020 tables of one agent's key store; every method is one durable transaction."""

    def __init__(self, store: KeyStore, *, retention_s: float = 86400.0) -> None:
        self.store, self.retention_s = store, retention_s
        with store.transaction():
            for sql in _SCHEMA:
                store.execute(sql)

    def _x(self, sql: str, params: Sequence = (), deletes_key: bool = False):
        return self.store.execute(sql, params, deletes_key=deletes_key)

    # -- received keys ------------------------------------------------------------------------
    def receive(self, peer: str, req: ExtKeyRequest, now: float, max_pending: int | None = None, *,
                hold_material: bool = True) -> tuple[list[ExtKey], list[Outcome]]:
        """Hold new keys (state received); a key ID this peer passed before is not stored again:
        its current outcome is returned instead (a retry). Raises :class:`KeyIdInUse` (and keeps
        nothing of the request) for a key ID of another peer or one held with another value, and
        :class:`TooMuchWaiting` (nothing kept) when the peer's :meth:`pending_callbacks` and these
        keys come to more than ``max_pending``. ``hold_material`` False (keys only passed on, for
        SAEs elsewhere): the rows keep the keys' state, never their material."""
        new, known = [], []
        with self.store.transaction():
            if max_pending is not None and self.pending_callbacks(peer) + len(req.keys) > max_pending:
                raise TooMuchWaiting(f"KME {peer} has too much work waiting here")
            for k in req.keys:
                row = self._x("SELECT peer, material, state, initiator, targets FROM etsi020_rx WHERE key_id=?",
                              (k.key_id,)).fetchone()
                if row is None:
                    if self._x("SELECT 1 FROM etsi020_tx WHERE key_id=?", (k.key_id,)).fetchone() or \
                            self.store.peek(k.key_id) is not None:
                        raise KeyIdInUse(f"key ID {k.key_id} is in use here")
                    new.append(k)
                    continue
                if row[0] != peer or (row[1] is not None and bytes(row[1]) != k.material):
                    raise KeyIdInUse(f"key ID {k.key_id} is held here for another key")
                if row[2] != rules.RX_RECEIVED:
                    known.append(Outcome(k.key_id, self._rx_status(k.key_id, row[2]), row[3],
                                         tuple(json.loads(row[4]))))
            for k in new:
                self._x("INSERT INTO etsi020_rx (key_id, peer, initiator, targets, material, state, callback, "
                        "extension, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (k.key_id, peer, req.initiator, json.dumps(req.targets),
                         k.material if hold_material else None, rules.RX_RECEIVED,
                         req.callback_url, json.dumps(k.extension) if k.extension else None, now))
        return new, known

    def _rx_status(self, key_id: str, state: str) -> str:
        if state == rules.RX_RELAYED:
            return "relayed"
        return {"failed": "failed", "voided": "voided", "delivered": "relayed"}.get(state, "failed")

    def _rx_state(self, key_id: str, state: str) -> str:
        # a relayed key whose end-to-end copy is gone was fetched by its SAE(s)
        if state == rules.RX_RELAYED and self.store.peek(key_id) is None:
            return rules.RX_DELIVERED
        return state

    def relayed(self, key_ids: Sequence[str], deliverable: Sequence[StoredKey], now: float,
                extension: dict | None = None) -> list[Outcome]:
        """Mark keys relayed: their copies for this node's SAEs (``deliverable``) enter the key store
        in the same transaction, the material leaves this table; acks (with ``extension``) are
        queued for async requests."""
        return self._settle(key_ids, rules.RX_RELAYED, "relayed", None, deliverable, now, extension)

    def failed(self, key_ids: Sequence[str], message: str, now: float) -> list[Outcome]:
        return self._settle(key_ids, rules.RX_FAILED, "failed", message, (), now)

    def _settle(self, key_ids, state, status, message, deliverable, now, extension=None) -> list[Outcome]:
        out = []
        with self.store.transaction():
            if deliverable:
                self.store.put(list(deliverable))
            by_callback: dict[tuple[str, str], list[Outcome]] = {}
            for kid in key_ids:
                row = self._x("SELECT peer, initiator, targets, callback, state, material IS NOT NULL FROM etsi020_rx "
                              "WHERE key_id=?", (kid,)).fetchone()
                if row is None or row[4] != rules.RX_RECEIVED:
                    continue
                self._x("UPDATE etsi020_rx SET material=NULL, state=? WHERE key_id=?", (state, kid),
                        deletes_key=bool(row[5]))
                o = Outcome(kid, status, row[1], tuple(json.loads(row[2])), message, extension)
                out.append(o)
                if row[3]:
                    by_callback.setdefault((row[0], row[3]), []).append(o)
            for (peer, url), outcomes in by_callback.items():
                for body in ack_calls(outcomes):
                    self._enqueue(peer, url, ACK, body, now)
        return out

    def received_material(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        with self.store.transaction():
            out = {}
            for kid in key_ids:
                row = self._x("SELECT material FROM etsi020_rx WHERE key_id=? AND state=?",
                              (kid, rules.RX_RECEIVED)).fetchone()
                if row and row[0] is not None:
                    out[kid] = bytes(row[0])
            return out

    def unsettled(self) -> list[tuple[str, str]]:
        """(key_id, peer) of received keys not relayed or failed yet (after a restart: relay them again)."""
        with self.store.transaction():
            return [(r[0], r[1]) for r in self._x("SELECT key_id, peer FROM etsi020_rx WHERE state=? ORDER BY rowid",
                                                  (rules.RX_RECEIVED,)).fetchall()]

    def rx_request(self, key_id: str) -> tuple[str, str, list[str]] | None:
        """(peer, initiator, targets) of a received key."""
        with self.store.transaction():
            row = self._x("SELECT peer, initiator, targets FROM etsi020_rx WHERE key_id=?", (key_id,)).fetchone()
        return (row[0], row[1], json.loads(row[2])) if row else None

    def void_received(self, peer: str, key_ids: Sequence[str], initiator: str, targets: Sequence[str],
                      ) -> list[Outcome]:
        """Void keys this peer passed us (empty ``key_ids``: every key between the SAEs, the caller
        checked ``all_confirmation``): deliverable copies go, their state becomes voided."""
        out = []
        with self.store.transaction():
            if not key_ids:
                rows = self._x("SELECT key_id, targets FROM etsi020_rx WHERE peer=? AND initiator=? AND state!=?",
                               (peer, initiator, rules.RX_VOIDED)).fetchall()
                # "all keys between the named SAEs": keys whose targets are exactly the named set
                key_ids = [r[0] for r in rows if sorted(json.loads(r[1])) == sorted(targets)]
            for kid in key_ids:
                row = self._x("SELECT peer, state FROM etsi020_rx WHERE key_id=?", (kid,)).fetchone()
                state = self._rx_state(kid, row[1]) if row and row[0] == peer else None
                status = rules.void_status(state)
                if status == "voided":
                    self.store.discard([kid])
                    self._x("UPDATE etsi020_rx SET material=NULL, state=? WHERE key_id=?",
                            (rules.RX_VOIDED, kid), deletes_key=True)
                elif status == "failed to void":
                    self._x("UPDATE etsi020_rx SET state=? WHERE key_id=?", (rules.RX_DELIVERED, kid))
                out.append(Outcome(kid, status, initiator, tuple(targets)))
        return out

    def voiding_received(self, peer: str, key_ids: Sequence[str]) -> None:
        """Our ack of these keys never reached the peer: void them here before telling the peer."""
        if key_ids:
            self.void_received(peer, key_ids, "", ())

    # -- sent keys ------------------------------------------------------------------------------
    def record_sent(self, peer: str, keys: Sequence[ExtKey], initiator: str, targets: Sequence[str],
                    due: float, now: float, *, keep_material: bool = True) -> None:
        """Record keys sent (state sent) with their material for retries, or without it
        (``keep_material`` False: no retry under the same values, a failure is voided)."""
        with self.store.transaction():
            for k in keys:
                if self._x("SELECT 1 FROM etsi020_rx WHERE key_id=?", (k.key_id,)).fetchone():
                    raise KeyIdInUse(f"key ID {k.key_id} is in use here")
                self._x("INSERT INTO etsi020_tx (key_id, peer, initiator, targets, material, state, attempts, due, "
                        "created) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                        (k.key_id, peer, initiator, json.dumps(list(targets)),
                         k.material if keep_material else None, rules.TX_SENT, due, now))

    def _sent(self, row) -> SentKey:
        return SentKey(row[0], row[1], row[2], tuple(json.loads(row[3])),
                       bytes(row[4]) if row[4] is not None else None, row[5], row[6], row[7])

    _TX_COLUMNS = "key_id, peer, initiator, targets, material, state, attempts, due"

    def sent(self, key_ids: Iterable[str]) -> list[SentKey]:
        with self.store.transaction():
            rows = [self._x(f"SELECT {self._TX_COLUMNS} FROM etsi020_tx WHERE key_id=?", (k,)).fetchone()
                    for k in key_ids]
        return [self._sent(r) for r in rows if r]

    def sent_due(self, now: float) -> list[SentKey]:
        """Sent keys still unsettled whose ack is overdue."""
        with self.store.transaction():
            rows = self._x(f"SELECT {self._TX_COLUMNS} FROM etsi020_tx WHERE state IN (?, ?) AND due<=? "
                           "ORDER BY rowid", (rules.TX_SENT, rules.TX_VOIDING, now)).fetchall()
        return [self._sent(r) for r in rows]

    def set_sent(self, key_ids: Iterable[str], state: str, *, attempts: int | None = None,
                 due: float | None = None) -> None:
        with self.store.transaction():
            for kid in key_ids:
                final = state in rules.TX_FINAL
                self._x("UPDATE etsi020_tx SET state=?, attempts=COALESCE(?, attempts), due=COALESCE(?, due)"
                        + (", material=NULL" if final else "") + " WHERE key_id=?",
                        (state, attempts, due, kid), deletes_key=final)

    def forget_sent(self, key_ids: Iterable[str]) -> None:
        with self.store.transaction():
            for kid in key_ids:
                self._x("DELETE FROM etsi020_tx WHERE key_id=?", (kid,), deletes_key=True)

    def apply_acks(self, peer: str, outcomes: Sequence[Outcome]) -> list[tuple[SentKey, str]]:
        """Apply a peer's acks, all or none: to keys we sent it, or to keys it passed us whose
        void we asked for. Returns (the key before, its new state) for sent keys. Raises
        :class:`KeyError` naming a key ID this peer has no business acknowledging, or
        :class:`rules.AckRefused`."""
        changes = []
        with self.store.transaction():
            for o in outcomes:
                row = self._x(f"SELECT {self._TX_COLUMNS} FROM etsi020_tx WHERE key_id=?", (o.key_id,)).fetchone()
                if row is not None and row[1] == peer:
                    before = self._sent(row)
                    changes.append((before, rules.tx_after_ack(before.state, o.status)))
                    continue
                rx = self._x("SELECT peer FROM etsi020_rx WHERE key_id=?", (o.key_id,)).fetchone()
                if rx is None or rx[0] != peer:
                    raise KeyError(o.key_id)
            for before, state in changes:
                final = state in rules.TX_FINAL
                self._x("UPDATE etsi020_tx SET state=?" + (", material=NULL" if final else "") + " WHERE key_id=?",
                        (state, before.key_id), deletes_key=final and before.material is not None)
        return changes

    # -- outbox ---------------------------------------------------------------------------------
    def _enqueue(self, peer: str, url: str, kind: str, body: object, now: float) -> None:
        self._x("INSERT INTO etsi020_outbox (peer, url, kind, body, due) VALUES (?, ?, ?, ?, ?)",
                (peer, url, kind, json.dumps(body), now))

    def enqueue(self, peer: str, url: str, kind: str, body: object, now: float) -> None:
        with self.store.transaction():
            self._enqueue(peer, url, kind, body, now)

    def outbox_due(self, now: float, limit: int = 64) -> list[OutboxItem]:
        with self.store.transaction():
            rows = self._x("SELECT id, peer, url, kind, body, attempts FROM etsi020_outbox WHERE due<=? "
                           "ORDER BY due, id LIMIT ?", (now, limit)).fetchall()
        return [OutboxItem(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def outbox_done(self, item_id: int) -> None:
        with self.store.transaction():
            self._x("DELETE FROM etsi020_outbox WHERE id=?", (item_id,))

    def outbox_later(self, item_id: int, due: float) -> None:
        with self.store.transaction():
            self._x("UPDATE etsi020_outbox SET attempts=attempts+1, due=? WHERE id=?", (due, item_id))

    def pending_callbacks(self, peer: str) -> int:
        """Acks and voids still owed to ``peer`` plus its keys not settled yet (its share of our work)."""
        with self.store.transaction():
            queued = self._x("SELECT COUNT(*) FROM etsi020_outbox WHERE peer=?", (peer,)).fetchone()[0]
            held = self._x("SELECT COUNT(*) FROM etsi020_rx WHERE peer=? AND state=?",
                           (peer, rules.RX_RECEIVED)).fetchone()[0]
        return int(queued) + int(held)

    # -- housekeeping ----------------------------------------------------------------------------
    def purge(self, now: float) -> None:
        """Forget settled rows (no material in them) older than the retention."""
        cutoff = now - self.retention_s
        with self.store.transaction():
            self._x("DELETE FROM etsi020_rx WHERE material IS NULL AND created<?", (cutoff,))
            self._x("DELETE FROM etsi020_tx WHERE material IS NULL AND created<?", (cutoff,))

    def counts(self) -> dict[str, int]:
        with self.store.transaction():
            return {t: int(self._x(f"SELECT COUNT(*) FROM etsi020_{t}").fetchone()[0]) for t in ("rx", "tx", "outbox")}
