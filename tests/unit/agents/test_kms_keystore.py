"""End-to-end key store: all-or-none delivery, 401 vs not found, multicast, durability."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kms_agents.keystore import DuplicateKey, KeyNotFound, KeyStore, NotAuthorised, StoredKey


def test_sqlite_settings(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL


def test_fetch_delivers_once_and_checks_the_caller(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    store.put([StoredKey("k1", "m", ["s"], b"\x01" * 32), StoredKey("k2", "m", ["s"], b"\x02" * 32)])
    assert store.pending_count("m", "s") == 2
    with pytest.raises(NotAuthorised):
        store.fetch("m", "eve", ["k1"])
    with pytest.raises(KeyNotFound):
        store.fetch("other-master", "s", ["k1"])
    with pytest.raises(KeyNotFound):          # all or none: k3 is missing, k1 stays
        store.fetch("m", "s", ["k1", "k3"])
    got = store.fetch("m", "s", ["k2", "k1"])
    assert [k.key_id for k in got] == ["k2", "k1"] and got[1].material == b"\x01" * 32
    with pytest.raises(KeyNotFound):
        store.fetch("m", "s", ["k1"])
    assert store.peek("k1") is None and store.pending_count("m", "s") == 0


def test_multicast_key_stays_until_every_slave_has_it(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    store.put([StoredKey("k1", "m", ["s1", "s2"], b"x" * 16)])
    store.fetch("m", "s1", ["k1"])
    assert store.peek("k1") is not None
    store.fetch("m", "s2", ["k1"])
    assert store.peek("k1") is None


def test_duplicates_and_empty_recipients(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    store.put([StoredKey("k1", "m", ["s"], b"x")])
    with pytest.raises(DuplicateKey):
        store.put([StoredKey("k2", "m", ["s"], b"y"), StoredKey("k1", "m", ["s"], b"z")])
    assert store.peek("k2") is None        # the whole batch was rolled back
    with pytest.raises(ValueError, match="k9"):
        store.put([StoredKey("k9", "m", [], b"x")])
    with pytest.raises(KeyNotFound):
        store.fetch("m", "s", ["k1", "k1"])


def test_undelivered_keys_survive_reopen_and_delivered_bytes_are_gone(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = KeyStore(path)
    secret = bytes.fromhex("5eed" * 16)
    store.put([StoredKey("gone", "m", ["s"], secret), StoredKey("kept", "m", ["s"], b"\x07" * 32,
                                                                 meta={"hops": 0})])
    store.fetch("m", "s", ["gone"])
    store.close()
    again = KeyStore(path)
    kept = again.peek("kept")
    assert kept is not None and kept.meta == {"hops": 0} and kept.slaves == ["s"]
    again.close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    assert secret not in path.read_bytes()


def test_key_store_files_are_private(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "state" / "keys.db")
    store.put([StoredKey("k1", "m", ["s"], b"\x01" * 32)])
    assert {f.name for f in store.files()} >= {"keys.db", "keys.db-wal"}
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in store.files())
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    store.close()
    for f in KeyStore(tmp_path / "state" / "keys.db").files():   # an older store is tightened
        f.chmod(0o644)
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in KeyStore(tmp_path / "state" / "keys.db").files())


def test_delivered_and_voided_key_bytes_are_gone_from_every_file(tmp_path: Path) -> None:
    import os
    store = KeyStore(tmp_path / "keys.db")
    keys = {f"k{i}": os.urandom(32) for i in range(40)}
    store.put([StoredKey(kid, "m", ["s"], m) for kid, m in keys.items()])

    def on_disk() -> set[str]:
        data = b"".join(f.read_bytes() for f in store.files())
        return {kid for kid, m in keys.items() if m in data}

    assert on_disk() == set(keys)                         # durable: in the log or the database
    store.fetch("m", "s", [f"k{i}" for i in range(20)])   # delivered
    store.discard([f"k{i}" for i in range(20, 30)])       # voided
    assert on_disk() == {f"k{i}" for i in range(30, 40)}  # only the undelivered ones remain
    assert (tmp_path / "keys.db-wal").stat().st_size == 0
    assert [k.material for k in store.fetch("m", "s", [f"k{i}" for i in range(30, 40)])] == \
        [keys[f"k{i}"] for i in range(30, 40)]
    assert on_disk() == set()


def _on_disk(path: Path, key_id: str) -> bool:
    """Whether another connection (the file as a restarted agent reads it) holds the key."""
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT 1 FROM e2e_key WHERE key_id=?", (key_id,)).fetchone() is not None
    finally:
        con.close()


def test_group_commit_every_put_is_committed_on_return_and_concurrent_ones_share_commits(
        tmp_path: Path) -> None:
    import threading
    path = tmp_path / "k.db"
    store = KeyStore(path)
    gate = threading.Barrier(8)
    missing: list[str] = []

    def writer(t: int) -> None:
        gate.wait()
        for i in range(25):
            kid = f"t{t}-{i}"
            store.put([StoredKey(kid, "m", ["s"], b"\x01" * 32)])
            if not _on_disk(path, kid):       # released before its commit: not durable
                missing.append(kid)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert missing == []
    assert store.pending_count("m", "s") == 200
    assert store.commits < 200                # some commits (fsyncs) carried several puts


def test_deferred_changes_share_one_commit_and_are_durable_when_the_block_ends(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = KeyStore(path)
    before = store.commits
    with store.deferred():
        store.put([StoredKey("a", "m", ["s"], b"x")])
        store.put([StoredKey("b", "m", ["s"], b"y")])
        assert not _on_disk(path, "a")        # not committed yet: nothing of it may leave yet
    assert _on_disk(path, "a") and _on_disk(path, "b") and store.commits == before + 1
    with pytest.raises(DuplicateKey):         # a change that fails is rolled back alone; the
        with store.deferred():                # block's other changes are still committed
            store.put([StoredKey("c", "m", ["s"], b"z")])
            store.put([StoredKey("d", "m", ["s"], b"z"), StoredKey("a", "m", ["s"], b"z")])
    assert _on_disk(path, "c") and not _on_disk(path, "d")


def test_a_read_answers_only_with_committed_keys(tmp_path: Path) -> None:
    import threading
    path = tmp_path / "k.db"
    store = KeyStore(path)
    seen = []
    with store.deferred():
        store.put([StoredKey("a", "m", ["s"], b"x")])
        reader = threading.Thread(target=lambda: seen.append(store.peek("a") is not None and _on_disk(path, "a")))
        reader.start()
        reader.join()
    assert seen == [True]                     # the reader committed the group before answering


def test_new_key_ids_are_unique_version_7_uuids_in_time_order() -> None:
    import time
    import uuid

    from kms_agents.keystore import new_key_ids
    first = new_key_ids(128)
    time.sleep(0.002)
    second = new_key_ids(128)
    parsed = [uuid.UUID(k) for k in first + second]
    assert all(str(u) == k for u, k in zip(parsed, first + second))   # canonical lower-case form
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert len(set(first + second)) == 256
    assert first == sorted(first) and max(first) < min(second)   # a later request sorts after
    now_ms = time.time_ns() // 1_000_000
    assert all(0 <= now_ms - (u.int >> 80) < 5_000 for u in parsed)   # the 48-bit time is now
    # the 74 bits after the time are random: no two IDs of one millisecond share them
    assert len({u.int & ((1 << 80) - 1) for u in parsed}) == 256


def _wal_pages_of_one_put(tmp_path: Path, ids) -> int:
    """Pages one put of 128 keys writes to the log of a store already holding 20,480 keys."""
    store = KeyStore(tmp_path / "k.db")
    store.execute("PRAGMA wal_autocheckpoint=0")    # the log only grows: its size counts pages
    for _ in range(160):
        store.put([StoredKey(k, "m", ["s"], b"k" * 32) for k in ids(128)])
    wal = Path(f"{store.path}-wal")
    page = store.execute("PRAGMA page_size").fetchone()[0]
    before = wal.stat().st_size
    store.put([StoredKey(k, "m", ["s"], b"k" * 32) for k in ids(128)])
    grown = wal.stat().st_size - before
    store.close()
    return grown // (page + 24)   # a WAL frame: 24-byte header + page


def test_keys_stored_together_under_new_key_ids_write_few_index_pages(tmp_path: Path) -> None:
    # random (version-4) IDs put each key of a request on another page of the key-ID indexes, so
    # one put rewrote most of them (the destination's CPU per bulk relay grew with its keys)
    import uuid

    from kms_agents.keystore import new_key_ids
    ordered = _wal_pages_of_one_put(tmp_path / "v7", new_key_ids)
    random_ids = _wal_pages_of_one_put(tmp_path / "v4", lambda n: [str(uuid.uuid4()) for _ in range(n)])
    assert ordered <= 40 and random_ids > 5 * ordered, (ordered, random_ids)   # measured: 24 and 262
