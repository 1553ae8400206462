"""``qkdnet bench latency`` / ``qkdnet bench throughput``: ETSI 014 enc_keys over mutual TLS on loopback.

Both start two neighbouring agents (real processes, real TLS, real SQLite) in a
temporary directory. latency: one keep-alive client, sequential enc_keys for a
direct-link key (and, side by side, for an SAE on the same node as the baseline).
throughput: 50 concurrent keep-alive clients (spread over a few processes so the
client side is not the bottleneck) for a fixed time. Then both bring up the relay
line of mininet_topos/bench/relay.py (10 agents and QuSeC) for the relayed numbers
(latency by hop count and pre-relayed buffers; bulk relay Mb/s), unless ``--no-relay``.
Results go to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from mininet_topos.bench.stats import percentile

LATENCY_TARGETS = {"direct_p50_ms": 5.0, "direct_p99_ms": 20.0}
THROUGHPUT_TARGET = 500.0


def _topology():
    from mininet_topos.model import Node, QkdLink, Sae, Topology
    return Topology("bench2", {"A": Node("A"), "B": Node("B")}, [QkdLink("A-B", "A", "B", 13.7e6, 10.0)],
                    {s: Sae(s, n) for s, n in (("sae-a1", "A"), ("sae-a2", "A"), ("sae-b1", "B"))})


def _client(doc: dict, sae: str):
    from kms_agents.client import Etsi014Client
    e = doc["saes"][sae]
    return Etsi014Client(doc["nodes"][e["node"]]["etsi014_url"], doc["ca_cert"], e["cert"], e["key"],
                         kme_node=e["node"])



def measure_latency(doc: dict, n: int) -> dict:
    """Sequential enc_keys latencies (ms) over one keep-alive connection."""
    c = _client(doc, "sae-a1")
    out: dict = {}
    for label, slave in (("direct", "sae-b1"), ("local", "sae-a2")):
        for _ in range(min(50, n)):
            c.enc_keys(slave)                       # warm-up (TLS session, caches)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            c.enc_keys(slave)
            samples.append((time.perf_counter() - t0) * 1000)
        out[f"{label}_p50_ms"] = round(percentile(samples, 50), 3)
        out[f"{label}_p99_ms"] = round(percentile(samples, 99), 3)
        out[f"{label}_mean_ms"] = round(statistics.fmean(samples), 3)
    keys = c.enc_keys("sae-b1", number=1)
    dec = _client(doc, "sae-b1")
    samples = []
    for _ in range(min(n, 200)):
        keys = c.enc_keys("sae-b1")
        t0 = time.perf_counter()
        dec.dec_keys("sae-a1", [keys[0].key_id])
        samples.append((time.perf_counter() - t0) * 1000)
    out["dec_keys_p50_ms"] = round(percentile(samples, 50), 3)
    out["samples"] = n
    c.close(), dec.close()
    return out


def _load_worker(doc: dict, threads: int, duration: float, start_at: float, q) -> None:
    from kms_agents.client import Etsi014Error
    ok = [0] * threads
    errors = [0] * threads

    def run(i: int) -> None:
        c = _client(doc, "sae-a1")
        c.enc_keys("sae-b1")                        # connect + handshake before the clock starts
        while time.time() < start_at:
            time.sleep(0.001)
        end = start_at + duration
        while time.time() < end:
            try:
                c.enc_keys("sae-b1", size=256)
                ok[i] += 1
            except (Etsi014Error, OSError):
                errors[i] += 1
        c.close()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put((sum(ok), sum(errors)))


def measure_throughput(doc: dict, clients: int, duration: float, procs: int) -> dict:
    """enc_keys/s from ``clients`` concurrent keep-alive connections over ``duration`` seconds."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    start_at = time.time() + 3.0 + 0.2 * clients / procs
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=_load_worker, args=(doc, n, duration, start_at, q)) for n in per if n]
    for w in workers:
        w.start()
    results = [q.get(timeout=duration + 120) for _ in workers]
    for w in workers:
        w.join()
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    return {"clients": clients, "duration_s": duration, "requests": ok, "errors": errors,
            "requests_per_s": round(ok / duration, 1), "key_bits": 256}


def _network(state: Path):
    from mininet_topos.launch.local import LocalNetwork
    return LocalNetwork(_topology(), state, with_qusec=False, agent_env={"QUSEC_LOG_LEVEL": "WARNING"})


def run_latency(args: argparse.Namespace) -> int:
    from mininet_topos.bench import relay as bench_relay
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp, _network(Path(tmp)) as net:
        result = measure_latency(json.loads(net.network_json.read_text()), args.samples)
    if args.relay:
        with bench_relay.relay_network() as rnet:
            result.update(bench_relay.measure_latency(rnet, args.relay_samples))
    result["targets_met"] = all(result[k] < v for k, v in LATENCY_TARGETS.items())
    rows = [{"route": r, "p50 ms": result[f"{r}_p50_ms"], "p99 ms": result[f"{r}_p99_ms"],
             "mean ms": result[f"{r}_mean_ms"]} for r in ("direct", "local")]
    body = (f"ETSI 014 `enc_keys` (one 256-bit key) over one keep-alive mutual-TLS connection on loopback, "
            f"{result['samples']} sequential requests after warm-up. *direct*: SAEs on neighbouring nodes "
            f"(link key taken, the neighbour's vKMS claims it over gRPC and stores it durably before the "
            f"answer); *local*: both SAEs on the same node (baseline, no peer call).\n\n"
            + _md_table(rows) + f"\n`dec_keys` p50: {result['dec_keys_p50_ms']} ms.\n\n"
            f"Targets: direct p50 < {LATENCY_TARGETS['direct_p50_ms']} ms, p99 < "
            f"{LATENCY_TARGETS['direct_p99_ms']} ms: **{'met' if result['targets_met'] else 'NOT met'}**.\n")
    if args.relay:
        body += "\n" + bench_relay.latency_markdown(result)
    _record("latency", "ETSI 014 key delivery latency (direct link, relayed, pre-relayed buffers)", body,
            f"qkdnet bench latency --samples {args.samples}"
            + (f" --relay-samples {args.relay_samples}" if args.relay else " --no-relay"))
    print(json.dumps(result) if args.json else body)
    return 0


def run_throughput(args: argparse.Namespace) -> int:
    from mininet_topos.bench import relay as bench_relay
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp, _network(Path(tmp)) as net:
        result = measure_throughput(json.loads(net.network_json.read_text()), args.clients, args.duration,
                                    args.procs)
    if args.relay:
        with bench_relay.relay_network() as rnet:
            result.update(bench_relay.measure_throughput(rnet, args.relay_seconds))
    result["target_met"] = result["requests_per_s"] >= THROUGHPUT_TARGET and result["errors"] == 0
    body = (f"ETSI 014 `enc_keys` (256-bit keys, direct link) from {result['clients']} concurrent keep-alive "
            f"mutual-TLS clients ({args.procs} client processes) against one agent for "
            f"{result['duration_s']} s on loopback; client, both agents share the machine's cores.\n\n"
            + _md_table([{k: result[k] for k in ("clients", "requests", "errors", "requests_per_s")}])
            + f"\nTarget: >= {THROUGHPUT_TARGET:.0f} requests/s with zero errors: "
            f"**{'met' if result['target_met'] else 'NOT met'}**.\n")
    if args.relay:
        body += "\n" + bench_relay.throughput_markdown(result)
    _record("throughput", "ETSI 014 key delivery throughput (one agent, 50 clients; bulk relay)", body,
            f"qkdnet bench throughput --clients {args.clients} --duration {args.duration}"
            + (f" --relay-seconds {args.relay_seconds}" if args.relay else " --no-relay"))
    print(json.dumps(result) if args.json else body)
    return 0


def _md_table(rows: list[dict]) -> str:
    from mininet_topos.bench import doc as benchdoc
    return benchdoc.table(rows)


def _record(name: str, title: str, body: str, command: str) -> None:
    from mininet_topos.bench import doc as benchdoc
    benchdoc.record(name, title, body, command)


def add_parser(benches: argparse._SubParsersAction) -> None:
    p = benches.add_parser("latency", help="ETSI 014 enc_keys latency: direct link, relayed (1..8 hops), buffered")
    p.add_argument("--samples", type=int, default=1000, help="requests measured (default 1000)")
    p.add_argument("--relay-samples", type=int, default=40, help="relayed requests per hop count (default 40)")
    p.add_argument("--no-relay", dest="relay", action="store_false", help="skip the relayed measurements")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_latency)
    p = benches.add_parser("throughput", help="ETSI 014 enc_keys/s from 50 concurrent clients; bulk relay Mb/s")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    p.add_argument("--procs", type=int, default=5, help="client processes (default 5)")
    p.add_argument("--relay-seconds", type=float, default=4.0,
                   help="seconds of bulk relay per client count (default 4)")
    p.add_argument("--no-relay", dest="relay", action="store_false", help="skip the bulk relay measurement")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_throughput)


if __name__ == "__main__":
    from mininet_topos.cli import main
    sys.exit(main(["bench", *sys.argv[1:]]))
