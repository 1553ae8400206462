"""``qkdnet bench relay``: enc_keys latency of relayed keys by hop count, pre-relayed buffers, bulk throughput.

Brings up a line of 10 trusted nodes P-N0-N1-...-N8 as real processes (QuSeC under
osken-manager, one kms-agent per node, mutual TLS on loopback) and measures, through
ETSI 014 over HTTPS:

* enc_keys latency (p50/p99) for one 256-bit key from sae-0 to sae-h, h = 1..8 QKD hops
  (h = 1 is the direct link, no relay);
* on node P (pre-relay buffers on): the p50 of a 5-hop pair at a steady request rate
  (served from the buffer) against the p50 of P's direct neighbour, in the same run;
* relay throughput: bulk enc_keys (max keys per request x max key size) over 3 hops,
  with two concurrent clients, in Mb/s of delivered key; plus the link KMS's own
  take+claim rate for the same bulk, measured in-process in the same run, because the
  relay can never be faster than its link key source.

Results go to docs/benchmarks.md through benchdoc.record; ``--json`` prints them.
"""
from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

LINE_NODES = 9          # N0..N8: hop counts 1..8 from N0
BUFFER_HOPS = 5         # P -> N4
THROUGHPUT_HOPS = 3     # N0 -> N3
LINK_RATE_BPS = 1e9     # links fast enough that the link rate itself is not the limit
LINK_CAPACITY = 1 << 26


def topology_toml() -> str:
    """The benchmark's line topology P-N0-...-N8 with one SAE per node."""
    nodes = ["P"] + [f"N{i}" for i in range(LINE_NODES)]
    out = ['[network]\nname = "relay-bench"\n'
           'description = "line of 10 nodes for the relay benchmark"\n']
    out += [f'\n[[nodes]]\nid = "{n}"\n' for n in nodes]
    out += [f'\n[[links]]\na = "{a}"\nb = "{b}"\nrate_bps = {LINK_RATE_BPS:g}\n'
            for a, b in zip(nodes, nodes[1:])]
    out += [f'\n[[saes]]\nid = "sae-{n[1:].lower() if n != "P" else "p"}"\nnode = "{n}"\n'
            for n in nodes]
    return "".join(out)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _latencies(client: Any, slave: str, samples: int, warmup: int = 3,
               pace_s: float = 0.0) -> tuple[list[float], dict]:
    out, ext = [], {}
    for i in range(warmup + samples):
        t0 = time.perf_counter()
        keys = client.enc_keys(slave, 1, 256)
        dt = time.perf_counter() - t0
        if i >= warmup:
            out.append(dt * 1000)
        ext = keys[0].key_extension or {}
        if pace_s:
            time.sleep(pace_s)
    return out, ext


def _throughput(net: Any, master: str, slave: str, seconds: float, clients: int = 2
                ) -> tuple[float, int, int]:
    limits = net.client(master).status(slave)
    number = int(limits["max_key_per_request"])
    size = int(limits["max_key_size"])
    bits = [0] * clients
    stop = time.perf_counter() + seconds
    errors: list[Exception] = []

    def worker(i: int) -> None:
        c = net.client(master)
        try:
            while time.perf_counter() < stop:
                keys = c.enc_keys(slave, number, size)
                bits[i] += sum(len(k.key) * 8 for k in keys)
        except Exception as exc:  # reported below: a failed bench is not a number
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"bulk relay failed: {errors[0]}")
    return sum(bits) / elapsed / 1e6, number, size


def link_kms_mbps(n_bytes: int, seconds: float = 2.0) -> float:
    """take+claim rate of the simulated link KMS (both ends, durable stores) for ``n_bytes``."""
    from kms_agents.keystore import KeyStore
    from kms_agents.qkd_module import SimulatedQkdModule
    with tempfile.TemporaryDirectory() as d:
        a_store, b_store = KeyStore(Path(d) / "a.db"), KeyStore(Path(d) / "b.db")
        secret, epoch = secrets.token_bytes(32), time.time() - 60
        a = SimulatedQkdModule("l", "A", "B", secret, LINK_RATE_BPS, epoch, a_store,
                               capacity_bytes=LINK_CAPACITY)
        b = SimulatedQkdModule("l", "B", "A", secret, LINK_RATE_BPS, epoch, b_store,
                               capacity_bytes=LINK_CAPACITY)
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            lk = a.take(n_bytes)
            b.claim(lk.key_ids, n_bytes)
            done += n_bytes
        rate = done * 8 / (time.perf_counter() - t0) / 1e6
        a_store.close()
        b_store.close()
        return rate


def measure(samples: int = 40, max_hops: int = 8, seconds: float = 5.0,
            state_dir: Path | None = None) -> dict:
    """Run the whole benchmark; returns the JSON-able result."""
    from kms_agents.relaynet import RelayNet
    root = Path(state_dir or tempfile.mkdtemp(prefix="bench-relay-"))
    net = RelayNet(root, topology_toml(), link_capacity_bytes=LINK_CAPACITY,
                   relay_settings={"P": {"prerelay": True, "prerelay_max_keys": 64}})
    try:
        c0 = net.client("sae-0")
        hops = range(1, max_hops + 1)
        lat: dict[int, list[float]] = {h: [] for h in hops}
        routes = {}
        for h in hops:  # warm-up: path granted, channels open
            routes[h] = _latencies(c0, f"sae-{h}", 0, warmup=3)[1].get("qusec_route_type", "?")
        for _ in range(samples):  # interleaved, so every hop count sees the same load
            for h in hops:
                lat[h] += _latencies(c0, f"sae-{h}", 1, warmup=0)[0]
        relayed = [{"hops": h, "route": routes[h], "p50_ms": round(statistics.median(lat[h]), 3),
                    "p99_ms": round(percentile(lat[h], 0.99), 3)} for h in hops]
        cp = net.client("sae-p")
        # steady demand (one key every 50 ms) lets P's buffer size itself, then measure it
        # interleaved with P's direct neighbour
        target = f"sae-{BUFFER_HOPS - 1}"
        _latencies(cp, "sae-0", 0, warmup=3)
        _latencies(cp, target, 20, warmup=0, pace_s=0.05)
        time.sleep(1.0)
        direct, buffered = [], []
        for _ in range(samples):
            direct += _latencies(cp, "sae-0", 1, warmup=0)[0]
            buffered += _latencies(cp, target, 1, warmup=0, pace_s=0.05)[0]
        unbuffered_5 = next(r for r in relayed if r["hops"] == BUFFER_HOPS)["p50_ms"]
        mbps, number, size = _throughput(net, "sae-0", f"sae-{THROUGHPUT_HOPS}", seconds)
        kms = link_kms_mbps(number * size // 8 // 4)
        return {
            "relayed": relayed,
            "direct_p50_ms": round(statistics.median(direct), 3),
            "buffered_p50_ms": round(statistics.median(buffered), 3),
            "buffered_hops": BUFFER_HOPS,
            "unbuffered_p50_ms_same_hops": unbuffered_5,
            "relay_mbps": round(mbps, 3),
            "relay_mbps_hops": THROUGHPUT_HOPS,
            "bulk_request": {"number": number, "size_bits": size, "clients": 2},
            "link_kms_take_claim_mbps": round(kms, 3),
            "samples": samples,
        }
    finally:
        net.stop()


def markdown(res: dict) -> str:
    """The docs/benchmarks.md section body."""
    from mininet_topos import benchdoc
    five = next((r for r in res["relayed"] if r["hops"] == 5), None)
    base = next((r["p50_ms"] for r in res["relayed"] if r["hops"] == 1), None)
    rows = [dict(r, p50_over_direct_ms=round(r["p50_ms"] - base, 3)) if base is not None else r
            for r in res["relayed"]]
    lines = [f"enc_keys (ETSI 014, HTTPS with mutual TLS) for one 256-bit key from sae-0 to an SAE "
             f"h QKD hops away on a line of real agent processes ({res['samples']} samples each, "
             f"hop counts interleaved; h = 1 is the direct link; `p50_over_direct_ms` is what "
             f"relaying adds to it):", "",
             benchdoc.table(rows), ""]
    if five:
        ok = "met" if five["p50_ms"] < 25 else "NOT met"
        lines.append(f"* Target p50 < 25 ms at 5 hops: {five['p50_ms']:.1f} ms, {ok}.")
    ratio = res["buffered_p50_ms"] / res["direct_p50_ms"] if res["direct_p50_ms"] else float("nan")
    ok = "met" if ratio <= 1.5 else "NOT met"
    lines += [f"* Pre-relayed buffers ({res['buffered_hops']} hops, one key every 50 ms): p50 "
              f"{res['buffered_p50_ms']:.2f} ms vs direct link {res['direct_p50_ms']:.2f} ms "
              f"in the same run (x{ratio:.2f}; target within x1.5: {ok}); without buffers the "
              f"same hop count took {res['unbuffered_p50_ms_same_hops']:.2f} ms.",
              f"* Relay throughput over {res['relay_mbps_hops']} hops, bulk requests of "
              f"{res['bulk_request']['number']} x {res['bulk_request']['size_bits']} bits, "
              f"{res['bulk_request']['clients']} clients: {res['relay_mbps']:.2f} Mb/s "
              f"(target 85 Mb/s: {'met' if res['relay_mbps'] >= 85 else 'NOT met'}).",
              f"* Link KMS (simulated module) take+claim of the same bulk, in-process, same run: "
              f"{res['link_kms_take_claim_mbps']:.2f} Mb/s per hop; every relay hop needs one "
              f"take and one claim, so this bounds the relay."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    res = measure(samples=args.samples, max_hops=args.max_hops, seconds=args.seconds)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(markdown(res))
    if args.record:
        from mininet_topos import benchdoc
        via_cli = Path(sys.argv[0]).name == "qkdnet"
        cmd = ("qkdnet bench relay" if via_cli else "python -m kms_agents.bench_relay") + \
            (f" --samples {args.samples}" if args.samples != 40 else "")
        benchdoc.record("relay", "Key relay: latency by hop count, pre-relayed buffers, throughput",
                        markdown(res), cmd)
    return 0


def add_parser(benches: argparse._SubParsersAction) -> None:
    p = benches.add_parser("relay", help="relayed enc_keys latency by hops, buffers, relay Mb/s",
                           description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--samples", type=int, default=40, help="requests per measurement (default 40)")
    p.add_argument("--max-hops", type=int, default=8, help="longest relay measured (1..8)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of the throughput run")
    p.add_argument("--no-record", dest="record", action="store_false",
                   help="do not write docs/benchmarks.md")
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kms_agents.bench_relay")
    add_parser(parser.add_subparsers(dest="bench", required=True))
    args = parser.parse_args(["relay", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
