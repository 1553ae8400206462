"""``qkdnet bench topology``: time loading and validating synthetic meshes of 100..10,000 nodes."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from mininet_topos import synthetic, topology
from mininet_topos.bench import doc as benchdoc

DEFAULT_SIZES = (100, 1000, 10_000)
TARGET_NODES = 10_000
TARGET_S = 5.0          # issue 2: load + validate a 10,000-node topology in under 5 s


def measure(n: int, seed: int = 1, repeat: int = 3, workdir: Path | None = None) -> dict:
    """Generate one mesh, write its TOML, then time read+parse, validate and graph build.

    Generation and TOML writing are timed separately and not part of the load time.
    Each load phase reports the median of ``repeat`` runs.
    """
    t0 = time.perf_counter()
    topo = synthetic.mesh(n, seed)
    t1 = time.perf_counter()
    text = topology.dumps(topo)
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / f"mesh{n}.toml"
        path.write_text(text)
        parse_s, validate_s, graph_s = [], [], []
        for _ in range(repeat):
            a = time.perf_counter()
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            b = time.perf_counter()
            loaded = topology.parse(data, str(path), path=path)
            c = time.perf_counter()
            graph = loaded.qkd_graph()
            d = time.perf_counter()
            parse_s.append(b - a)
            validate_s.append(c - b)
            graph_s.append(d - c)
        # the public entry point end to end, once, as a cross-check
        e = time.perf_counter()
        topology.load(path)
        load_s = time.perf_counter() - e
    assert len(loaded.nodes) == n and graph.number_of_edges() == len(topo.links)
    med = statistics.median
    return {
        "nodes": n, "links": len(topo.links), "saes": len(topo.saes),
        "file_MB": round(len(text.encode()) / 1e6, 3),
        "generate_s": t1 - t0, "write_toml_s": t2 - t1,
        "parse_s": med(parse_s), "validate_s": med(validate_s), "graph_s": med(graph_s),
        "load_total_s": med(parse_s) + med(validate_s) + med(graph_s),
        "topology_load_s": load_s,
    }


def report(rows: list[dict], seed: int, repeat: int) -> str:
    """The Markdown section body: table, method and the 5 s target check."""
    body = [benchdoc.table(rows).rstrip("\n"), "",
            f"Seed {seed}; each load phase is the median of {repeat} runs. `parse_s` = read the file "
            "+ `tomllib`; `validate_s` = `topology.parse` (all checks, key rates, PLOB bound, "
            "connectivity); `graph_s` = networkx graph build; `load_total_s` = their sum. "
            "`generate_s`/`write_toml_s` (making the mesh and its TOML text) are not load time; "
            "`topology_load_s` is one end-to-end `topology.load(path)` call.", ""]
    target = [r for r in rows if r["nodes"] == TARGET_NODES]
    if target:
        t = target[0]["load_total_s"]
        verdict = "met" if t < TARGET_S else "NOT met"
        body.append(f"Target: load + validate + graph of {TARGET_NODES:,} nodes under {TARGET_S:g} s: "
                    f"{t:.2f} s, {verdict}.")
    return "\n".join(body) + "\n"


def run(args: argparse.Namespace) -> int:
    sizes = args.sizes or list(DEFAULT_SIZES)
    synthetic.mesh(synthetic.MIN_NODES * 5, args.seed)   # warm-up: imports (scipy) out of the timings
    rows = [measure(n, args.seed, args.repeat) for n in sizes]
    body = report(rows, args.seed, args.repeat)
    command = "qkdnet bench topology" + (f" --sizes {' '.join(map(str, sizes))}" if args.sizes else "")
    if not args.no_record:
        benchdoc.record("topology", "Topology load and validation (synthetic meshes)", body, command)
    ok = all(r["load_total_s"] < TARGET_S for r in rows if r["nodes"] == TARGET_NODES)
    if args.json:
        json.dump({"bench": "topology", "seed": args.seed, "repeat": args.repeat, "rows": rows,
                   "target_s": TARGET_S, "target_nodes": TARGET_NODES, "ok": ok}, sys.stdout, indent=2)
        print()
    else:
        print(body)
    return 0 if ok else 1


def add_parser(benches: argparse._SubParsersAction) -> None:
    parser = benches.add_parser(
        "topology", help="load + validate synthetic meshes (100..10,000 nodes)",
        description="Generate seeded synthetic meshes, write each as TOML to a temporary directory, "
                    "and time parse + validate + graph build. Target: 10,000 nodes in under 5 s.")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="N",
                        help=f"mesh sizes (default {' '.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    parser.set_defaults(func=run)
