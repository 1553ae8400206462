"""``qkdnet bench live-routing``: key-aware routing on live agents, against the flow bound.

A real ``--local`` network (every node a ``kms-agent`` process, QuSeC with its inventory) on
which SAE pairs fetch keys through ETSI 014 ``enc_keys`` at the max-concurrent-flow bound of the
same demand matrix (the LP the routing bench solves, ``mininet_topos.bench.keyflow``). Link rates
are scaled so that the bound is ``--pair-bps`` per pair and the run fits in minutes, and every
link end keeps only ``--buffer-s`` seconds of key, so what is delivered in the window is what the
links produce, not what they stored before it. The bound counts what a relay hop really burns:
a request of ``k`` keys of 256 bits costs ``256 k`` bits of pad plus 256 bits of one-time MAC
key per hop, so link capacities enter the LP scaled by ``k / (k + 1)``.

Both metrics run on the same network in one run, in alternated windows (QuSeC reloads its policy
file between them; ``--rounds`` of hops/key_aware, key_aware/hops, ...): delivered/bound over each
steady-state window, their mean and spread per metric, and the ``enc_keys`` latency by hop count
(p50/p99) while that load runs. ``--log`` keeps every measured request (pair, paths, error) and
QuSeC's grants and refusals, to see why requests failed.
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
METRICS = ("hops", "key_aware")
BACKLOG_S = 5.0   # a pair's demand queued at most (keyflow.SimConfig.backlog_s)


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
    p.add_argument("--rounds", type=int, default=3, help="windows per metric, alternated")
    p.add_argument("--warmup", type=float, default=60.0,
                   help="seconds before each window (at least QuSeC's path_ttl: paths granted under "
                        "the other metric are still reused until then)")
    p.add_argument("--window", type=float, default=40.0, help="measured seconds per window")
    p.add_argument("--buffer-s", type=float, default=2.0, help="seconds of key a link end keeps")
    p.add_argument("--model-seeds", type=int, default=10,
                   help="seeds of the model of this network in simulated time (livemodel; 0: none)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--log", help="append every measured request to this file (JSON lines: window, metric, "
                                 "time, pair, ok, ms, hops, paths, error)")
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
    """One thread per pair: enc_keys of ``keys`` keys every ``keys*256/pair_bps`` seconds. Every
    request made inside the current window is kept (``records``): when, which pair, whether it
    got its keys, how long it took, the hops and paths they were relayed over, the error."""

    def __init__(self, doc: dict, pairs, home: dict, pair_bps: float, keys: int) -> None:
        self.doc, self.pairs, self.home, self.keys = doc, pairs, home, keys
        self.period = keys * KEY_BITS / pair_bps
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.window: tuple[float, float] | None = None
        self.records: list[dict] = []
        self.threads = [threading.Thread(target=self._run, args=(i, p), daemon=True) for i, p in enumerate(pairs)]

    def measure(self, start: float, end: float) -> None:
        with self.lock:
            self.window = (start, end)
            self.records = []

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
                err = ""
            except Etsi014Error as exc:
                got, err = [], f"{exc.status} {((exc.body or {}).get('message') or '')[:70]}"
            except OSError as exc:
                got, err = [], type(exc).__name__
            ms = (time.perf_counter() - p0) * 1000
            ext = (got[0].key_extension or {}) if got else {}
            hops = ext.get("qusec_hops")
            hops = int(hops) if isinstance(hops, int) else -1
            route = ext.get("qusec_route_type", "")
            rec = {"t": round(t0, 3), "pair": list(pair), "ok": bool(got), "ms": round(ms, 2),
                   "bits": len(got) * KEY_BITS, "hops": hops, "route": route,
                   "paths": ext.get("qusec_paths") or [], "error": err}
            rec["links"] = sum(len(p) - 1 for p in rec["paths"]) if route == "indirect" else int(route == "direct")
            with self.lock:
                if self.window is not None and self.window[0] <= t0 < self.window[1]:
                    self.records.append(rec)
            # behind (the machine busy): the late requests are still made, as the key-flow
            # simulation keeps a pair's demand queued, up to BACKLOG_S of it
            nxt = max(nxt, time.monotonic() - BACKLOG_S)
        cli.close()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def summarise(records: list[dict], window_s: float, pair_bps: float, pairs: int) -> dict:
    """One window's figures from its request records."""
    ok = [r for r in records if r["ok"]]
    bits = sum(r["bits"] for r in ok)
    errors: dict[str, int] = defaultdict(int)
    for r in records:
        if not r["ok"]:
            errors[r["error"]] += 1
    return {"delivered_bps": round(bits / window_s, 1), "ratio": round(bits / (pair_bps * pairs * window_s), 3),
            "requests_ok": len(ok), "requests_failed": len(records) - len(ok),
            "ok_share": round(len(ok) / max(1, len(records)), 3), "errors": dict(errors),
            "p50_ms": round(percentile([r["ms"] for r in records], 50), 1),
            "links_per_request": round(sum(r["links"] for r in ok) / max(1, len(ok)), 3)}


def write_policy(policy: Path, metric: str) -> None:
    policy.write_text(f'[default]\naction = "allow"\npaths = 1\nmetric = "{metric}"\nsecurity_level = "qkd"\n')


def set_metric(policy: Path, metric: str, net, timeout: float = 15.0) -> None:
    """Write the policy file with ``metric`` and wait until QuSeC reloaded it."""
    def reloads() -> int:
        return int(((net.operator.status(timeout=5).get("policy_reload") or {}).get("reloads") or {}).get("ok", 0))
    before = reloads()
    write_policy(policy, metric)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reloads() > before:
            return
        time.sleep(0.2)
    raise RuntimeError(f"QuSeC did not reload {policy} with metric {metric!r}")


def window_events(operator, since: int, end: float) -> list[dict]:
    """QuSeC's path decisions (granted, refused) after event ``since`` up to wall time ``end``."""
    out: list[dict] = []
    while True:
        got = operator.events(since=since, timeout=10)
        batch = got.get("events") or []
        out += [e for e in batch if e["kind"] in ("path_granted", "path_refused") and e["time"] < end]
        if not batch or got.get("last_seq", since) <= since:
            return out
        since = batch[-1]["seq"]


def order(rounds: int) -> list[str]:
    """The metric of each window: alternated, hops/key_aware then key_aware/hops (ABBA), so a
    drift of the machine's load over the run weighs on both alike."""
    out: list[str] = []
    for r in range(rounds):
        out += list(METRICS if r % 2 == 0 else reversed(METRICS))
    return out


def started(make, say, attempts: int = 3):
    """A started network from ``make(attempt)``; a busy machine can keep agents from being ready
    in time, so a start that fails that way is tried again (``attempts`` in all)."""
    from mininet_topos.launch.fleet import AgentStartError
    for n in range(1, attempts + 1):
        net = make(n)
        try:
            net.start()
            return net
        except AgentStartError as exc:
            net.stop()
            if n == attempts:
                raise
            say(f"  the network did not come up ({str(exc)[:120]}); starting it again")
    raise AssertionError("unreachable")


def modelled(spec: str, args: argparse.Namespace, say) -> list[dict]:
    """The model of this network in simulated time (``livemodel``), each difference from the
    key-flow simulation undone in turn."""
    from mininet_topos import topology
    from mininet_topos.bench import livemodel
    from mininet_topos.bench.keyflow import random_pairs
    if args.model_seeds <= 0:
        return []
    topo0 = topology.load(spec)
    pairs = random_pairs(topo0, args.pairs, args.seed)
    topo, _, _ = scaled(topo0, pairs, args.pair_bps, args.keys)
    base = livemodel.Model(keys=args.keys, pair_bps=args.pair_bps, buffer_s=args.buffer_s,
                           warmup_s=args.warmup, window_s=args.window)
    rows = [{"topology": spec, **r} for r in livemodel.decomposition(topo, pairs, args.model_seeds, base)]
    for r in rows:
        say(f"  model, {r['model']}: hops {r['hops_mean']}, key_aware {r['key_aware_mean']}")
    return rows


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
    log = open(args.log, "a") if args.log else None
    with tempfile.TemporaryDirectory(prefix="qusec-bench-live-") as tmp:
        policy = Path(tmp) / "policy.toml"
        write_policy(policy, "hops")
        net = started(lambda n: LocalNetwork(topo, Path(tmp) / f"net{n}", policy=policy,
                                             config_hook=small_buffers), say)
        try:
            doc = json.loads(net.network_json.read_text())
            load = Load(doc, pairs, home, args.pair_bps, args.keys)
            load.start()
            try:
                current = "hops"
                for i, metric in enumerate(order(args.rounds)):
                    if metric != current:
                        set_metric(policy, metric, net)
                        current = metric
                    # a source reuses its granted path until shortly before it expires: after a
                    # change of metric the warm-up outlasts every path granted under the other
                    start = time.time() + args.warmup
                    load.measure(start, start + args.window)
                    say(f"  window {i + 1}: {metric}, warm-up {args.warmup:g} s, {args.window:g} s")
                    time.sleep(args.warmup)
                    seq = net.operator.events(limit=1, timeout=10)["last_seq"]
                    time.sleep(args.window + 1.0)
                    with load.lock:
                        records = list(load.records)
                    decisions = window_events(net.operator, seq, start + args.window)
                    row = {"topology": spec, "nodes": len(topo.nodes), "pairs": len(pairs), "metric": metric,
                           "round": i // 2 + 1, "bound_bps_per_pair": args.pair_bps,
                           **summarise(records, args.window, args.pair_bps, len(pairs)),
                           "grants": sum(e["kind"] == "path_granted" for e in decisions),
                           "refusals": sum(e["kind"] == "path_refused" for e in decisions),
                           "records": records}
                    rows.append(row)
                    say(f"  {metric}: ratio {row['ratio']}, {row['requests_ok']} ok, "
                        f"{row['requests_failed']} failed, {row['links_per_request']} links per request, "
                        f"QuSeC granted {row['grants']} paths and refused {row['refusals']}")
                    if log is not None:
                        for r in records:
                            log.write(json.dumps({"topology": spec, "window": i + 1, "metric": metric, **r}) + "\n")
                        for e in decisions:
                            log.write(json.dumps({"topology": spec, "window": i + 1, "metric": metric,
                                                  "event": e}) + "\n")
                        log.flush()
            finally:
                load.join()
                if log is not None:
                    log.close()
        finally:
            net.stop()
    return rows


def spread(values: list[float]) -> tuple[float, float, float]:
    """(mean, min, max)."""
    return sum(values) / len(values), min(values), max(values)


def report(rows: list[dict], args: argparse.Namespace, model: list[dict] = ()) -> str:
    from mininet_topos.bench import doc
    table = [{k: r[k] for k in ("topology", "round", "metric", "delivered_bps", "ratio", "requests_ok",
                                "requests_failed", "ok_share", "links_per_request", "grants", "refusals",
                                "p50_ms")}
             for r in rows]
    summary, checks, lat = [], [], []
    for spec in dict.fromkeys(r["topology"] for r in rows):
        mine = [r for r in rows if r["topology"] == spec]
        by: dict[str, tuple[float, float, float]] = {}
        for metric in METRICS:
            got = [r for r in mine if r["metric"] == metric]
            if not got:
                continue
            by[metric] = mean, lo, hi = spread([r["ratio"] for r in got])
            n_ok, n_failed = sum(r["requests_ok"] for r in got), sum(r["requests_failed"] for r in got)
            summary.append({"topology": spec, "nodes": got[0]["nodes"], "pairs": got[0]["pairs"], "metric": metric,
                            "windows": len(got), "ratio_mean": round(mean, 3), "ratio_min": lo, "ratio_max": hi,
                            "requests_ok": n_ok, "requests_failed": n_failed,
                            "ok_share": round(n_ok / max(1, n_ok + n_failed), 3),
                            "links_per_request": round(sum(r["links_per_request"] * r["requests_ok"] for r in got)
                                                       / max(1, n_ok), 3)})
            times: dict[int, list[float]] = defaultdict(list)
            for r in got:
                for rec in r["records"]:
                    if rec["ok"]:
                        times[rec["hops"]].append(rec["ms"])
            lat += [{"topology": spec, "metric": metric, "hops": h, "enc_keys_p50_ms": round(percentile(v, 50), 1),
                     "enc_keys_p99_ms": round(percentile(v, 99), 1), "requests": len(v)}
                    for h, v in sorted(times.items())]
        if "key_aware" in by and "hops" in by:
            (ka, ka_lo, ka_hi), (hp, hp_lo, hp_hi) = by["key_aware"], by["hops"]
            met = ka >= TARGET_RATIO and ka >= hp
            apart = "the ranges overlap" if ka_lo <= hp_hi and hp_lo <= ka_hi else "the ranges do not overlap"
            checks.append(f"* {spec}: key_aware {ka:.3f} of the bound (windows {ka_lo:.3f}..{ka_hi:.3f}), "
                          f"hops {hp:.3f} ({hp_lo:.3f}..{hp_hi:.3f}), {apart}: {'met' if met else 'NOT met'} "
                          f"(target: key_aware >= {TARGET_RATIO} and above hops, means over the windows)")
    method = (
        f"Method: every pair requests {args.keys} keys of 256 bits every {args.keys * KEY_BITS / args.pair_bps:g} s "
        f"(the bound, {args.pair_bps:g} b/s per pair, after scaling the link rates); link ends keep "
        f"{args.buffer_s:g} s of key. A pair whose requests fall behind (the machine busy) makes the late ones "
        f"at once, up to {BACKLOG_S:g} s of them (the key-flow simulation's backlog); requests not made by the "
        f"window's end count against the ratio, not `ok_share` (of the requests made, those that got their "
        f"keys). {args.rounds} rounds on one network, each a window per metric, the metrics alternated "
        "(hops, key_aware, then key_aware, hops, ...; QuSeC reloads its policy between them); each window is "
        f"{args.window:g} s after a {args.warmup:g} s warm-up that outlasts every path granted under the other "
        "metric (a source reuses its granted path until shortly before it expires). `links_per_request`: QKD "
        "links a delivered request's key crossed (1 for a direct link); `grants`, `refusals`: QuSeC's path "
        "decisions in the window (its event log); `p50_ms`: the window's median enc_keys time, which "
        "shows how busy the machine was. Why the live ratio trails the key-flow simulation's: "
        "[routing.md](routing.md#on-live-agents).\n")
    modelled_text = ""
    if model:
        modelled_text = (
            "\nThe same networks in a model in simulated time (`mininet_topos/bench/livemodel.py`: QuSeC's core, "
            f"{args.model_seeds} seeds, the same warm-up and window), with the live network's differences from the "
            "key-flow simulation undone one at a time (mean and range of delivered/bound):\n\n"
            + doc.table(list(model)))
    return (doc.table(summary) + "\n" + "\n".join(checks) + "\n\n"
            "Each window:\n\n" + doc.table(table) + "\n"
            "ETSI 014 `enc_keys` latency under that load, by the hops the keys were relayed over "
            "(`qusec_hops`: trusted nodes between the ends; 0: a direct link or a local pair), all windows "
            "of a metric:\n\n" + doc.table(lat) + "\n" + method + modelled_text)


def run(args: argparse.Namespace) -> int:
    from mininet_topos.bench import doc
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    rows, model = [], []
    for spec in args.topologies:
        model += modelled(spec, args, say)
        rows += measure(spec, args, say)
    if args.json:
        print(json.dumps({"rows": [{k: v for k, v in r.items() if k != "records"} for r in rows], "model": model}))
    if not args.no_record:
        doc.record("live-routing", "Routing on live agents: delivered/bound, key_aware vs hops", report(rows, args, model),
                   "qkdnet bench live-routing " + " ".join(args.topologies))
    return 0
