"""SQLite store of link-key state and end-to-end keys awaiting delivery (WAL, synchronous=FULL).

Every change is atomic and fsync'd before the call returns, so a killed agent restarted on
the same file loses no undelivered key and never hands a key out twice. Changes made at the
same time share one commit (**group commit**): each change is a savepoint inside the one open
SQLite transaction, and the first caller to wait for durability commits every change made so
far (one fsync), releasing each caller only after the commit that holds its change; callers
that come while that commit runs go into the next one. :meth:`KeyStore.deferred` lets one
caller make several changes and wait once (a relay hop's claim of link key and its take or its
stored keys: one fsync per hop end, shared with the other hops in flight).
Delivered and voided keys leave no bytes behind in any file of the store: the delete
overwrites them in the database pages (``secure_delete``), and the transaction that
deleted them ends with a checkpoint that truncates the write-ahead log, whose older
frames still held them. The files are mode 0600 (the key material is in them).
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

FILE_MODE = 0o600
SUFFIXES = ("", "-wal", "-shm", "-journal")   # every file SQLite keeps for a database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS link_cursor (
    link_id TEXT NOT NULL, direction TEXT NOT NULL, fingerprint TEXT NOT NULL,
    next_index INTEGER NOT NULL DEFAULT 0, claim_floor INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, direction));
CREATE TABLE IF NOT EXISTS link_claimed_run (
    link_id TEXT NOT NULL, direction TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL,
    PRIMARY KEY (link_id, direction, start));
CREATE TABLE IF NOT EXISTS e2e_key (
    key_id TEXT PRIMARY KEY, master_sae TEXT NOT NULL, slaves TEXT NOT NULL,
    material BLOB NOT NULL, size_bits INTEGER NOT NULL, created REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS e2e_pending (
    key_id TEXT NOT NULL, sae TEXT NOT NULL, master_sae TEXT NOT NULL,
    PRIMARY KEY (key_id, sae));
CREATE INDEX IF NOT EXISTS e2e_pending_pair ON e2e_pending (master_sae, sae);
"""


def new_key_ids(n: int) -> list[str]:
    """``n`` fresh key IDs for keys about to be made and stored: RFC 9562 version-7 UUIDs (48 bits of
    Unix time in ms, the version, 74 random bits), sorted. Keys made together then sit together in
    the store's two key-ID indexes: under random (version-4) IDs each key of a 128-key request
    went to another index page, so one commit rewrote most of the indexes' pages and a store's
    CPU per bulk put grew with the keys it held (see docs/relay.md, *Where bulk relay time goes*).
    The random bits keep an ID unguessable; its time is no secret (the master SAE learns it with
    the key)."""
    ms = (time.time_ns() // 1_000_000 & ((1 << 48) - 1)).to_bytes(6, "big").hex()
    head = f"{ms[:8]}-{ms[8:]}-7"                      # the time, then the version nibble
    rand = secrets.token_bytes(10 * n).hex()           # 80 random bits per ID, 74 of them used
    out = []
    for i in range(0, 20 * n, 20):                     # text built directly: uuid.UUID is 9x slower
        h = rand[i:i + 20]
        out.append(f"{head}{h[:3]}-{'89ab'[int(h[3], 16) & 3]}{h[4:7]}-{h[7:19]}")   # variant 10
    out.sort()
    return out


class KeyNotFound(Exception):
    """One or more key IDs are not stored here (or not for that master SAE / this caller)."""


class NotAuthorised(Exception):
    """The caller is not a named recipient of one or more of the keys."""


class DuplicateKey(Exception):
    """A key ID is already stored."""


class CommitFailed(Exception):
    """The commit that held a change failed (e.g. the disk is full): the change is not stored."""


@dataclass
class StoredKey:
    """An end-to-end key waiting here for its recipients (``slaves``) to fetch it."""
    key_id: str
    master_sae: str
    slaves: list[str]
    material: bytes
    created: float = field(default_factory=time.time)
    meta: dict = field(default_factory=dict)   # route_type, hops, security_level, path ...

    @property
    def size_bits(self) -> int:
        return len(self.material) * 8


class KeyStore:
    """Durable key state of one agent; thread-safe (one connection behind a lock, group commit)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # SQLite gives the -wal and -shm files the database file's mode: create it 0600
        # first (an empty file is an empty database), and tighten files an older agent left
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE))
        for f in self.files():
            os.chmod(f, FILE_MODE)
        self._lock = threading.RLock()   # the connection; held through each change, and a commit
        self._depth = 0          # nesting of transaction() in the thread holding the lock
        self._owner: int | None = None   # that thread
        self._deleted = False    # the open group deleted key material
        self._group = 0          # number of the group of changes open (or last opened)
        self._open = False       # BEGIN issued for group _group, not committed yet
        self._changes = 0        # changes made in the open group
        self._sync = threading.Condition()   # commit state below, and the callers waiting on it
        self._durable = 0        # every group up to this number is committed
        self._failed: set[int] = set()       # groups whose commit failed
        self._committing = False
        self.commits = 0         # commits made (each one fsync)
        self._local = threading.local()      # per thread: deferred() depth and the group to wait for
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        if self._open:
            self._wait(self._group)
        with self._lock:
            self._db.close()

    def files(self) -> list[Path]:
        """The files of this store that exist now (database, WAL, shared memory, journal)."""
        return [p for p in (Path(f"{self.path}{s}") for s in SUFFIXES) if p.exists()]

    def _tx(self):
        return _Tx(self)

    def transaction(self):
        """One atomic, durable transaction around several store calls (they nest inside it)."""
        return self._tx()

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Changes made by this thread inside the block are durable when it ends (even when it
        ends with an exception), with one wait for them all instead of one per change; nothing
        they stand for may leave the node before then. Nests; inside a transaction the
        transaction's end waits instead."""
        loc = self._local
        depth = getattr(loc, "depth", 0)
        if depth == 0:
            loc.group = 0
        loc.depth = depth + 1
        try:
            yield
        finally:
            loc.depth = depth
            if depth == 0 and loc.group and not self._in_tx():
                self._wait(loc.group)

    def _in_tx(self) -> bool:
        """Whether this thread is inside a transaction (it holds the connection)."""
        return self._depth > 0 and self._owner == threading.get_ident()

    def _wait(self, group: int) -> None:
        """Return once group ``group`` is committed; commit it (with every change made so far)
        unless another caller is committing. Raises CommitFailed if its commit failed."""
        with self._sync:
            while True:
                if group in self._failed:
                    raise CommitFailed(f"key store {self.path}: the commit of a change failed")
                if self._durable >= group:
                    return
                if not self._committing:
                    self._committing = True
                    break
                self._sync.wait()
        lost = None
        try:
            with self._lock:
                last = self._group
                if self._open:
                    self._open, self._changes = False, 0
                    try:
                        self._db.execute("COMMIT")
                        self.commits += 1
                    except BaseException:
                        lost = last
                        if self._db.in_transaction:
                            self._db.execute("ROLLBACK")
                        raise
                    if self._deleted:
                        self._deleted = False
                        self._wipe_log()
        finally:
            with self._sync:
                self._committing = False
                if lost is not None:
                    self._failed.add(lost)
                else:
                    self._durable = max(self._durable, last)
                self._sync.notify_all()
        if group in self._failed:
            raise CommitFailed(f"key store {self.path}: the commit of a change failed")

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A read outside any transaction answers only with what is durable: it waits for the
        open group's commit when it ends (inside a transaction or deferred block, that waits)."""
        with self._lock:
            inside = self._depth > 0
            yield
            group = self._group if self._open else 0
        if group and not inside:
            if getattr(self._local, "depth", 0):
                self._local.group = max(self._local.group, group)
            else:
                self._wait(group)

    def _wipe_log(self) -> None:
        # after a transaction that deleted key material: copy the log into the database
        # (whose pages are the overwritten ones) and cut the log to zero bytes
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("key store %s: WAL checkpoint blocked; deleted key bytes may stay in the log "
                        "until the next one", self.path)

    # -- link key state (LinkStateStore) --------------------------------------------
    def _cursor_row(self, link_id: str, direction: str, fp: str) -> tuple[int, int]:
        row = self._db.execute(
            "SELECT fingerprint, next_index, claim_floor FROM link_cursor WHERE link_id=? AND direction=?",
            (link_id, direction)).fetchone()
        if row is None or row[0] != fp:
            # New link or a new secret (network rebuilt): its old state means nothing now.
            self._db.execute("DELETE FROM link_claimed_run WHERE link_id=? AND direction=?", (link_id, direction))
            self._db.execute(
                "INSERT OR REPLACE INTO link_cursor (link_id, direction, fingerprint, next_index, claim_floor) "
                "VALUES (?, ?, ?, 0, 0)", (link_id, direction, fp))
            return 0, 0
        return int(row[1]), int(row[2])

    def link_cursor(self, link_id: str, direction: str, fingerprint: str) -> int:
        with self._tx():
            return self._cursor_row(link_id, direction, fingerprint)[0]

    def advance_link_cursor(self, link_id: str, direction: str, fingerprint: str,
                            old: int, new: int) -> None:
        """Move the take cursor forward (never back); durable on return."""
        with self._tx():
            current, _ = self._cursor_row(link_id, direction, fingerprint)
            if current != old or new < old:
                raise RuntimeError(f"link {link_id} {direction}: cursor moved concurrently ({current} != {old})")
            self._db.execute("UPDATE link_cursor SET next_index=? WHERE link_id=? AND direction=?",
                             (new, link_id, direction))

    def claim_link_ranges(self, link_id: str, direction: str, fingerprint: str,
                          ranges: list[tuple[int, int]], floor: int) -> bool:
        """Record runs of block indices ``(start, count)`` as claimed, one row each; False (and
        no change) if any block of them was claimed already or is below the claim floor."""
        with self._tx():
            _, old_floor = self._cursor_row(link_id, direction, fingerprint)
            if min(start for start, _ in ranges) < old_floor:
                return False
            for start, count in ranges:
                # claimed runs are disjoint: only the last one starting before our end can overlap
                hit = self._db.execute(
                    "SELECT stop FROM link_claimed_run WHERE link_id=? AND direction=? AND start<? "
                    "ORDER BY start DESC LIMIT 1", (link_id, direction, start + count)).fetchone()
                if hit and hit[0] > start:
                    return False
            self._db.executemany("INSERT INTO link_claimed_run (link_id, direction, start, stop) VALUES (?, ?, ?, ?)",
                                 [(link_id, direction, a, a + n) for a, n in ranges])
            if floor > old_floor:
                self._db.execute("UPDATE link_cursor SET claim_floor=? WHERE link_id=? AND direction=?",
                                 (floor, link_id, direction))
                self._db.execute("DELETE FROM link_claimed_run WHERE link_id=? AND direction=? AND stop<=?",
                                 (link_id, direction, floor))
            return True

    def link_claimed_top(self, link_id: str, direction: str, fingerprint: str) -> int:
        """One past the highest block index claimed in ``direction`` (0: none)."""
        with self._tx():
            self._cursor_row(link_id, direction, fingerprint)
            row = self._db.execute(
                "SELECT stop FROM link_claimed_run WHERE link_id=? AND direction=? ORDER BY start DESC LIMIT 1",
                (link_id, direction)).fetchone()
            return int(row[0]) if row else 0

    # -- end-to-end keys ---------------------------------------------------------------
    def put(self, keys: Sequence[StoredKey]) -> None:
        """Store keys for their recipients, all or none; durable on return."""
        rows, pending = [], []
        slaves_json = meta_json = ""
        last_slaves: list[str] | None = None
        last_meta: dict | None = None
        for k in keys:
            if not k.slaves:
                raise ValueError(f"key {k.key_id}: no recipients")
            if k.slaves != last_slaves:   # the keys of one request share them: encoded once
                last_slaves, names = k.slaves, sorted(set(k.slaves))
                slaves_json = json.dumps(names)
            if k.meta != last_meta:
                last_meta, meta_json = k.meta, json.dumps(k.meta)
            rows.append((k.key_id, k.master_sae, slaves_json, k.material, k.size_bits, k.created, meta_json))
            pending += [(k.key_id, s, k.master_sae) for s in names]
        with self._tx():
            before = self._db.total_changes
            try:
                self._db.executemany(
                    "INSERT INTO e2e_key (key_id, master_sae, slaves, material, size_bits, created, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.IntegrityError:   # the rows go in in order: the first refused is the next
                dup = rows[self._db.total_changes - before][0]
                raise DuplicateKey(f"key ID {dup} is already stored") from None
            self._db.executemany("INSERT INTO e2e_pending (key_id, sae, master_sae) VALUES (?, ?, ?)", pending)

    def fetch(self, master_sae: str, caller: str, key_ids: Sequence[str]) -> list[StoredKey]:
        """Deliver keys to ``caller`` (all or none) and forget them once every recipient has them.

        Raises :class:`NotAuthorised` if a key exists but ``caller`` is not one of its named
        recipients, :class:`KeyNotFound` if a key is missing, belongs to another master SAE,
        or was already delivered to ``caller``.
        """
        if len(set(key_ids)) != len(key_ids):
            raise KeyNotFound("duplicate key IDs in request")
        out = []
        with self._tx():
            for kid in key_ids:
                row = self._db.execute(
                    "SELECT master_sae, slaves, material, created, meta FROM e2e_key WHERE key_id=?",
                    (kid,)).fetchone()
                if row is None or row[0] != master_sae:
                    raise KeyNotFound(kid)
                if caller not in json.loads(row[1]):
                    raise NotAuthorised(kid)
                if not self._db.execute("SELECT 1 FROM e2e_pending WHERE key_id=? AND sae=?",
                                        (kid, caller)).fetchone():
                    raise KeyNotFound(kid)
                out.append(StoredKey(kid, row[0], json.loads(row[1]), bytes(row[2]), row[3], json.loads(row[4])))
            for kid in key_ids:
                self._db.execute("DELETE FROM e2e_pending WHERE key_id=? AND sae=?", (kid, caller))
                if not self._db.execute("SELECT 1 FROM e2e_pending WHERE key_id=? LIMIT 1", (kid,)).fetchone():
                    self._db.execute("DELETE FROM e2e_key WHERE key_id=?", (kid,))
                    self._deleted = True
        return out

    def peek(self, key_id: str) -> StoredKey | None:
        """A stored key without delivering it (for checks and 004 metadata), or None."""
        with self._reading():
            row = self._db.execute(
                "SELECT master_sae, slaves, material, created, meta FROM e2e_key WHERE key_id=?",
                (key_id,)).fetchone()
        if row is None:
            return None
        return StoredKey(key_id, row[0], json.loads(row[1]), bytes(row[2]), row[3], json.loads(row[4]))

    def pending_count(self, master_sae: str, sae: str) -> int:
        """Keys from ``master_sae`` waiting for ``sae`` to fetch them."""
        with self._reading():
            return int(self._db.execute("SELECT COUNT(*) FROM e2e_pending WHERE master_sae=? AND sae=?",
                                        (master_sae, sae)).fetchone()[0])

    def pending_levels(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Keys waiting for delivery per (master SAE, recipient SAE): (count, bits); read-only."""
        with self._reading():
            rows = self._db.execute(
                "SELECT p.master_sae, p.sae, COUNT(*), SUM(k.size_bits) FROM e2e_pending p "
                "JOIN e2e_key k ON k.key_id = p.key_id GROUP BY p.master_sae, p.sae").fetchall()
        return {(m, s): (int(n), int(b or 0)) for m, s, n, b in rows}

    def pending_ids(self, master_sae: str, sae: str) -> list[str]:
        with self._reading():
            return [r[0] for r in self._db.execute(
                "SELECT key_id FROM e2e_pending WHERE master_sae=? AND sae=? ORDER BY rowid",
                (master_sae, sae))]

    def execute(self, sql: str, params: Sequence = (), *, deletes_key: bool = False) -> sqlite3.Cursor:
        """One statement on the store's connection, for modules that keep their own tables in this
        database (kms_agents.etsi020.store); writes belong inside :meth:`transaction`, and a
        statement that deletes key material passes ``deletes_key`` so the log is wiped after it."""
        with self._reading():
            cur = self._db.execute(sql, params)
            if deletes_key and cur.rowcount:
                self._deleted = True
            return cur

    def discard(self, key_ids: Iterable[str]) -> None:
        """Forget keys (e.g. a relay that was voided)."""
        with self._tx():
            for kid in key_ids:
                self._db.execute("DELETE FROM e2e_pending WHERE key_id=?", (kid,))
                if self._db.execute("DELETE FROM e2e_key WHERE key_id=?", (kid,)).rowcount:
                    self._deleted = True


class _Tx:
    """One change: a savepoint in the store's open group transaction (BEGIN IMMEDIATE when none is
    open), under the store's lock; rolled back alone on error. The outermost one's end waits for
    the commit of its group (or, inside :meth:`KeyStore.deferred`, leaves that to the block); a
    commit after a group that deleted key material wipes the store's log."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store
        self._db, self._lock = store._db, store._lock

    def __enter__(self) -> None:
        st = self._store
        self._lock.acquire()
        try:
            if st._depth == 0:
                if not st._open:
                    self._db.execute("BEGIN IMMEDIATE")
                    st._group, st._open = st._group + 1, True
                self._db.execute("SAVEPOINT change")
                st._owner = threading.get_ident()
            st._depth += 1
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        st = self._store
        group = 0
        try:
            st._depth -= 1
            if st._depth:
                return
            st._owner = None
            if exc_type is None:
                self._db.execute("RELEASE change")
                st._changes += 1
                group = st._group
            elif self._db.in_transaction:
                self._db.execute("ROLLBACK TO change")
                self._db.execute("RELEASE change")
                if not st._changes:   # nothing else in the group: end it here
                    self._db.execute("ROLLBACK")
                    st._open, st._deleted = False, False
            else:   # SQLite rolled the whole group back (e.g. disk full): its changes are lost
                with st._sync:
                    st._failed.add(st._group)
                    st._sync.notify_all()
                st._open, st._changes, st._deleted = False, 0, False
        finally:
            self._lock.release()
        if group:
            loc = st._local
            if getattr(loc, "depth", 0):
                loc.group = max(loc.group, group)
            else:
                st._wait(group)
