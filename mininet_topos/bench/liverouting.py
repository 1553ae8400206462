"""``qkdnet bench live-routing``: key-aware routing on live agents, against the flow bound.

A real ``--local`` network (every node a ``kms-agent`` process, QuSeC with its inventory) on
which SAE pairs fetch keys through ETSI 014 ``enc_keys`` at the max-concurrent-flow bound of the
same demand matrix (the LP the routing bench solves, ``mininet_topos.bench.keyflow``). Link rates
are scaled so that the bound is ``--pair-bps`` per pair and the run fits in minutes, and every
link end keeps only ``--buffer-s`` seconds of key, so what is delivered in the window is what the
links produce, not what they stored before it. The bound counts what a relay hop really burns:
a request of ``k`` keys of 256 bits costs ``256 k`` bits of pad plus 256 bits of one-time MAC
key per hop, so link capacities enter the LP scaled by ``k / (k + 1)``.

Both metrics run on the same network in one run (QuSeC reloads its policy file between them):
delivered/bound over a steady-state window for ``hops`` and for ``key_aware``, and the
``enc_keys`` latency by hop count (p50/p99) while that load runs.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from mininet_topos.bench.stats import percentile

SPECS = ("metro8", "mesh:40:1")   # mesh:40:1: static shortest paths reach 0.60 of the bound in the key-flow simulation
KEY_BITS = 256
TARGET_RATIO = 0.90


def add_parser(benches: argparse._SubParsersAction) -> None:
    p = benches.add_parser(
        "live-routing", help="key-aware vs hops routing on live agents at the flow bound (--local)",
        description="Real agents and QuSeC on loopback; SAE pairs request keys over ETSI 014 at the "
                    "max-concurrent-flow bound; delivered/bound for metric key_aware and hops in the "
                    "same run, and enc_keys latency by hop count under that load.")
    p.add_argument("topologies", nargs="*", default=list(SPECS), help=f"default: {' '.join(SPECS)}")
    p.add_argument("--pairs", type=int, default=8, help="SAE pairs (random, seeded)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pair-bps", type=float, default=4096.0, help="the bound per pair after scaling (b/s)")
    p.add_argument("--keys", type=int, default=8, help="keys of 256 bits per enc_keys request")
    p.add_argument("--warmup", type=float, default=12.0, help="seconds before each window")
    p.add_argument("--window", type=float, default=40.0, help="measured seconds per metric")
    p.add_argument("--buffer-s", type=float, default=2.0, help="seconds of key a link end keeps")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    p.set_defaults(func=run)


def scaled(topo, pairs, pair_bps: float, keys: int):
    """(the topology with every SAE pair's node given an SAE and link rates scaled so that the
    bound is ``pair_bps`` per pair, the SAE of each node, the unscaled bound)."""
    from mininet_topos.bench.keyflow import max_concurrent_flow
    from mininet_topos.model import Sae
    overhead = keys / (keys + 1)
    bound0 = max_concurrent_flow(topo, pairs) * overhead
    factor = pair_bps / bound0
    saes = dict(topo.saes)
    home = {s.node: s.id for s in topo.saes.values()}
    for node in sorted({n for p in pairs for n in p}):
        if node not in home:
            sid = f"sae-{node.lower()}"
            while sid in saes or sid in topo.nodes:   # metro8's sae-b is on H, not B
                sid += "x"
            saes[sid] = Sae(sid, node)
            home[node] = sid
    links = [replace(lk, rate_bps=lk.rate_bps * factor) for lk in topo.links]
    return replace(topo, links=links, saes=saes, path=None), home, bound0


class Load:
    """One thread per pair: enc_keys of ``keys`` keys every ``keys*256/pair_bps`` seconds."""

    def __init__(self, doc: dict, pairs, home: dict, pair_bps: float, keys: int) -> None:
        self.doc, self.pairs, self.home, self.keys = doc, pairs, home, keys
        self.period = keys * KEY_BITS / pair_bps
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.window: tuple[float, float] | None = None
        self.bits = 0
        self.ok = self.failed = 0
        self.by_hops: dict[int, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.threads = [threading.Thread(target=self._run, args=(i, p), daemon=True) for i, p in enumerate(pairs)]

    def measure(self, start: float, end: float) -> None:
        with self.lock:
            self.window = (start, end)
            self.bits = self.ok = self.failed = 0
            self.by_hops.clear()
            self.errors.clear()

    def _run(self, i: int, pair) -> None:
        from kms_agents.client import Etsi014Client, Etsi014Error
        src, dst = self.home[pair[0]], self.home[pair[1]]
        sae = self.doc["saes"][src]
        cli = Etsi014Client(self.doc["nodes"][pair[0]]["etsi014_url"], self.doc["ca_cert"], sae["cert"], sae["key"])
        nxt = time.monotonic() + (i / max(1, len(self.pairs))) * self.period
        while not self.stop.is_set():
            delay = nxt - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            nxt += self.period
            t0 = time.time()
            p0 = time.perf_counter()
            try:
                got = cli.enc_keys(dst, number=self.keys, size=KEY_BITS)
                ms = (time.perf_counter() - p0) * 1000
                err = ""
            except Etsi014Error as exc:
                got, ms, err = [], 0.0, f"{exc.status} {((exc.body or {}).get('message') or '')[:70]}"
            except OSError as exc:
                got, ms, err = [], 0.0, type(exc).__name__
            with self.lock:
                if self.window is None or not self.window[0] <= t0 < self.window[1]:
                    continue
                if got:
                    self.ok += 1
                    self.bits += len(got) * KEY_BITS
                    hops = (got[0].key_extension or {}).get("qusec_hops")
                    self.by_hops[int(hops) if isinstance(hops, int) else -1].append(ms)
                else:
                    self.failed += 1
                    self.errors[err] += 1
            if nxt < time.monotonic():   # behind: do not burst to catch up
                nxt = time.monotonic()
        cli.close()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def set_metric(policy: Path, metric: str, net, timeout: float = 15.0) -> None:
    """Write the policy file with ``metric`` and wait until QuSeC reloaded it."""
    def reloads() -> int:
        return int(((net.operator.status(timeout=5).get("policy_reload") or {}).get("reloads") or {}).get("ok", 0))
    before = reloads()
    policy.write_text(f'[default]\naction = "allow"\npaths = 1\nmetric = "{metric}"\nsecurity_level = "qkd"\n')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reloads() > before:
            return
        time.sleep(0.2)
    raise RuntimeError(f"QuSeC did not reload {policy} with metric {metric!r}")


def measure(spec: str, args: argparse.Namespace, say) -> list[dict]:
    from mininet_topos import topology
    from mininet_topos.bench.keyflow import random_pairs
    from mininet_topos.launch.local import LocalNetwork
    topo0 = topology.load(spec)
    pairs = random_pairs(topo0, args.pairs, args.seed)
    topo, home, bound0 = scaled(topo0, pairs, args.pair_bps, args.keys)
    say(f"{spec}: {len(topo.nodes)} nodes, {len(pairs)} pairs; unscaled bound {bound0:.4g} b/s per pair, "
        f"rates scaled to a bound of {args.pair_bps:g} b/s")

    def small_buffers(_node: str, cfg) -> None:
        for lk in cfg.links:
            lk.capacity_bytes = max(64, int(lk.rate_bps / 2 / 8 * args.buffer_s))

    rows = []
    with tempfile.TemporaryDirectory(prefix="qusec-bench-live-") as tmp:
        policy = Path(tmp) / "policy.toml"
        policy.write_text('[default]\naction = "allow"\npaths = 1\nmetric = "hops"\nsecurity_level = "qkd"\n')
        with LocalNetwork(topo, Path(tmp) / "net", policy=policy, config_hook=small_buffers) as net:
            doc = json.loads(net.network_json.read_text())
            load = Load(doc, pairs, home, args.pair_bps, args.keys)
            load.start()
            try:
                for metric in ("hops", "key_aware"):
                    if metric != "hops":
                        set_metric(policy, metric, net)
                    start = time.time() + args.warmup
                    load.measure(start, start + args.window)
                    say(f"  {metric}: warm-up {args.warmup:g} s, window {args.window:g} s")
                    time.sleep(args.warmup + args.window + 1.0)
                    with load.lock:
                        offered = args.pair_bps * len(pairs) * args.window
                        lat = {h: (round(percentile(sorted(v), 50), 1), round(percentile(sorted(v), 99), 1), len(v))
                               for h, v in sorted(load.by_hops.items())}
                        rows.append({"topology": spec, "nodes": len(topo.nodes), "pairs": len(pairs),
                                     "metric": metric, "bound_bps_per_pair": args.pair_bps,
                                     "delivered_bps": round(load.bits / args.window, 1),
                                     "ratio": round(load.bits / offered, 3), "requests_ok": load.ok,
                                     "requests_failed": load.failed,
                                     "errors": dict(load.errors), "latency_by_hops": lat})
                    say(f"  {rows[-1]}")
            finally:
                load.join()
    return rows


def report(rows: list[dict], args: argparse.Namespace) -> str:
    from mininet_topos.bench import doc
    table = [{k: r[k] for k in ("topology", "nodes", "pairs", "metric", "bound_bps_per_pair", "delivered_bps",
                                "ratio", "requests_ok", "requests_failed")} for r in rows]
    lat = [{"topology": r["topology"], "metric": r["metric"], "hops": h, "enc_keys_p50_ms": v[0],
            "enc_keys_p99_ms": v[1], "requests": v[2]}
           for r in rows for h, v in r["latency_by_hops"].items()]
    checks = []
    for spec in dict.fromkeys(r["topology"] for r in rows):
        by = {r["metric"]: r["ratio"] for r in rows if r["topology"] == spec}
        ka, hp = by.get("key_aware"), by.get("hops")
        if ka is not None and hp is not None:
            met = ka >= TARGET_RATIO and ka >= hp
            checks.append(f"* {spec}: key_aware {ka:.3f} of the bound, hops {hp:.3f}: "
                          f"{'met' if met else 'NOT met'} (target: key_aware >= {TARGET_RATIO} and above hops)")
    return (doc.table(table) + "\n" + "\n".join(checks) + "\n\n"
            "ETSI 014 `enc_keys` latency under that load, by the hops the keys were relayed over "
            "(`qusec_hops`; 0: a direct link or a local pair):\n\n" + doc.table(lat) + "\n"
            f"Method: every pair requests {args.keys} keys of 256 bits every {args.keys * KEY_BITS / args.pair_bps:g} s "
            f"(the bound, {args.pair_bps:g} b/s per pair, after scaling the link rates); link ends keep "
            f"{args.buffer_s:g} s of key; {args.warmup:g} s warm-up then a {args.window:g} s window per metric, "
            "hops first, then key_aware after QuSeC reloaded its policy. QuSeC sees key levels in the "
            "agents' reports every 2 s, reserves key for the paths it grants, and a request either gets "
            "all its keys or none, so the live ratio trails the key-flow simulation's.\n")


def run(args: argparse.Namespace) -> int:
    from mininet_topos.bench import doc
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    rows = []
    for spec in args.topologies:
        rows += measure(spec, args, say)
    if args.json:
        print(json.dumps({"rows": rows}))
    if not args.no_record:
        doc.record("live-routing", "Routing on live agents: delivered/bound, key_aware vs hops", report(rows, args),
                   "qkdnet bench live-routing " + " ".join(args.topologies))
    return 0
