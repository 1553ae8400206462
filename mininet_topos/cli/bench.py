"""``qkdnet bench NAME``: the benchmarks. Each bench module exposes ``add_parser``."""
from __future__ import annotations

import argparse
import importlib

BENCH_MODULES = (
    "mininet_topos.bench.topology",   # topology: load + validate synthetic meshes
    "mininet_topos.bench.routing",  # routing: delivered key rate vs multi-commodity bound
    "mininet_topos.bench.setup",    # setup: relay path setup latency in Mininet
    "mininet_topos.bench.kms",               # latency, throughput: ETSI 014 over mutual TLS
    "mininet_topos.bench.scale",      # scale: Mininet bring-up time, reroute time
    "mininet_topos.bench.control",    # control: QuSeC under thousands of simulated agents
    "mininet_topos.bench.liverouting",  # live-routing: key_aware vs hops on live agents at the bound
    "mininet_topos.bench.interdomain",  # interdomain: a key across three domains vs one domain
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench", help="run a benchmark and record it in docs/benchmarks.md",
        description="Run a benchmark. Results (with machine and date) are written to "
                    "docs/benchmarks.md; --json prints one JSON object instead of a table.")
    benches = parser.add_subparsers(dest="bench", metavar="NAME")
    for name in BENCH_MODULES:
        importlib.import_module(name).add_parser(benches)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
