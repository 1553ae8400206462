"""kill -9 during bulk relay: the middle node, then the destination, die hard under concurrent bulk
requests over 3 hops and come back on their state dirs.

Real processes: QuSeC under osken-manager and one kms-agent per node (mutual TLS on loopback, SQLite
stores, simulated QKD links), ETSI 014 clients. What must hold across the crashes:

* no key handed out twice: every key ID and key an enc_keys answer gave the master is unique, the
  slave fetches each once, and a second dec_keys of it is refused;
* nothing acknowledged lost: every key the master got is fetchable by the slave after the restarts;
* no link key used twice: read from the store files while the relay runs, every run of link key a
  receiving end claimed stays claimed (a claim that vanished would let the run be claimed again),
  claimed runs never overlap, and the sending end's durable take cursor never moves back and is
  always beyond everything claimed from it (a cursor behind a claimed run would hand that run out
  again, a two-time pad); no relay fails because its link key was claimed already.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from kms_agents.client import Etsi014Error
from mininet_topos.launch.relaynet import RelayNet

pytestmark = pytest.mark.integration

NODES = ["N0", "N1", "N2", "N3"]          # sae-0 on N0 relays to sae-3 on N3 over 3 hops
KEYS_PER_REQUEST = 32
KEY_BITS = 256
CLIENTS = 4


def _topology() -> str:
    out = ['[network]\nname = "crash"\ndescription = "line of 4 nodes: bulk relay with kill -9"\n']
    out += [f'\n[[nodes]]\nid = "{n}"\n' for n in NODES]
    out += [f'\n[[links]]\na = "{a}"\nb = "{b}"\nrate_bps = 1e9\n' for a, b in zip(NODES, NODES[1:])]
    out += [f'\n[[saes]]\nid = "sae-{n[1:]}"\nnode = "{n}"\n' for n in NODES]
    return "".join(out)


class LinkWatch:
    """Samples every store's link state from the files (read-only connections) and checks it."""

    def __init__(self, net: RelayNet) -> None:
        self.net = net
        self.claimed: dict[str, set[tuple[int, int]]] = {}   # direction -> runs ever seen claimed
        self.cursor: dict[str, int] = {}                     # direction -> highest take cursor seen
        self.problems: list[str] = []
        self.samples = 0
        self.paused = threading.Event()
        self.stop = threading.Event()

    def _read(self, node: str, sql: str) -> list[tuple]:
        con = sqlite3.connect(f"file:{self.net.db(node)}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def sample(self) -> None:
        # receiving ends first, then the sending ends: a take is durable before its message leaves,
        # so a cursor read after the claims must be beyond all of them
        runs: dict[str, list[tuple[int, int]]] = {}
        floors: dict[str, int] = {}
        for node in NODES:
            for direction, start, stop in self._read(node, "SELECT direction, start, stop FROM link_claimed_run"):
                if direction.endswith(f">{node}"):
                    runs.setdefault(direction, []).append((start, stop))
            for direction, floor in self._read(node, "SELECT direction, claim_floor FROM link_cursor"):
                if direction.endswith(f">{node}"):
                    floors[direction] = floor
        cursors = {}
        for node in NODES:
            for direction, nxt in self._read(node, "SELECT direction, next_index FROM link_cursor"):
                if direction.startswith(f"{node}>"):
                    cursors[direction] = nxt
        for direction, now in runs.items():
            seen = self.claimed.setdefault(direction, set())
            gone = {r for r in seen if r[1] > floors.get(direction, 0)} - set(now)
            if gone:
                self.problems.append(f"{direction}: claimed runs {sorted(gone)[:3]} no longer claimed")
            ordered = sorted(set(now))
            overlap = [(a, b) for a, b in zip(ordered, ordered[1:]) if a[1] > b[0]]
            if overlap:
                self.problems.append(f"{direction}: claimed runs overlap: {overlap[:3]}")
            seen.update(now)
            top = max(stop for _, stop in now)
            if cursors.get(direction, 0) < top:
                self.problems.append(f"{direction}: take cursor {cursors.get(direction)} behind the "
                                     f"claimed block {top - 1}")
        for direction, nxt in cursors.items():
            if nxt < self.cursor.get(direction, 0):
                self.problems.append(f"{direction}: take cursor moved back {self.cursor[direction]} -> {nxt}")
            self.cursor[direction] = max(nxt, self.cursor.get(direction, 0))
        self.samples += 1

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.paused.is_set():
                try:
                    self.sample()
                except sqlite3.OperationalError:   # a store being recovered by its restarted agent
                    pass
            time.sleep(0.05)


def test_kill_9_mid_hop_and_at_the_destination_loses_nothing_and_reuses_nothing(tmp_path: Path) -> None:
    net = RelayNet(tmp_path, _topology())
    try:
        got: dict[str, bytes] = {}          # key ID -> key, as the master got them
        answers: list[list[str]] = []
        errors: list[str] = []
        lock = threading.Lock()
        done = threading.Event()

        def worker() -> None:
            client = net.client("sae-0")
            while not done.is_set():
                try:
                    keys = client.enc_keys("sae-3", KEYS_PER_REQUEST, KEY_BITS)
                except (Etsi014Error, OSError) as exc:   # the crash windows: 503s, resets
                    with lock:
                        errors.append(str(exc))
                    time.sleep(0.05)
                    continue
                with lock:
                    answers.append([k.key_id for k in keys])
                    for k in keys:
                        if k.key_id in got:
                            errors.append(f"DUPLICATE key ID {k.key_id}")
                        got[k.key_id] = k.key

        def wait_for(more: int, within: float = 60.0) -> None:
            start, deadline = len(answers), time.monotonic() + within
            while len(answers) < start + more:
                assert time.monotonic() < deadline, f"no progress: {errors[-3:]}"
                time.sleep(0.05)

        watch = LinkWatch(net)
        watcher = threading.Thread(target=watch.run, daemon=True)
        watcher.start()
        workers = [threading.Thread(target=worker, daemon=True) for _ in range(CLIENTS)]
        for w in workers:
            w.start()
        wait_for(20)
        for node in ("N1", "N3"):           # the middle of a hop, then the destination
            watch.paused.set()
            net.restart_agent(node, kill=True)
            watch.paused.clear()
            wait_for(20)                    # relaying again through the restarted node
        done.set()
        for w in workers:
            w.join(30)
        watch.stop.set()
        watcher.join(10)
        watch.sample()

        assert watch.samples > 10 and watch.claimed, "the link state was never read"
        assert watch.problems == []
        reused = [e for e in errors if "already used" in e or "already claimed" in e or "DUPLICATE" in e]
        assert reused == []
        assert len({bytes(v) for v in got.values()}) == len(got)          # no key given twice
        assert sum(len(a) for a in answers) == len(got)

        slave = net.client("sae-3")                  # the restarted destination's new endpoint
        for ids in answers:                          # nothing acknowledged lost, each fetched once
            fetched = slave.dec_keys("sae-0", ids)
            assert [k.key for k in fetched] == [got[i] for i in ids]
            with pytest.raises(Etsi014Error) as again:
                slave.dec_keys("sae-0", ids[:1])
            assert again.value.status in (400, 404)
        slave.close()
    finally:
        net.stop()
