"""``qkdnet topo``: list shipped topologies, write synthetic meshes, show a topology."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

import networkx as nx

from mininet_topos import synthetic, topology
from mininet_topos.model import Topology

SHOW_LIMIT = 40       # list nodes/links/SAEs individually up to this many


def _rate(bps: float) -> str:
    for unit, scale in (("Mb/s", 1e6), ("kb/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} b/s"


def list_shipped(out: TextIO) -> int:
    rows = []
    for name, path in topology.shipped().items():
        try:
            topo = topology.load(path)
        except topology.TopologyError as exc:
            rows.append((name, "INVALID", exc.problems[0]))
            continue
        rows.append((name, topology.summary(topo), topo.description))
    width = max((len(r[0]) for r in rows), default=4)
    for name, size, desc in rows:
        marker = " (default)" if name == topology.DEFAULT_TOPOLOGY else ""
        print(f"{name:<{width}}  {size}{marker}\n{'':<{width}}  {desc}", file=out)
    print(f"{'mesh:N[:SEED]':<{width}}  synthetic random geometric mesh of N nodes "
          f"({synthetic.MIN_NODES}..{synthetic.MAX_NODES})", file=out)
    return 0 if all(r[1] != "INVALID" for r in rows) else 1


def write_mesh(n: int, seed: int, output: str | None, out: TextIO) -> int:
    try:
        topo = synthetic.mesh(n, seed)
    except ValueError as exc:
        print(f"qkdnet topo mesh: {exc}", file=sys.stderr)
        return 2
    text = topology.dumps(topo)
    if output in (None, "-"):
        out.write(text)
    else:
        Path(output).write_text(text)
        print(f"{output}: wrote {topology.summary(topo)}", file=out)
    return 0


def describe(topo: Topology) -> str:
    """A readable summary: counts, graph facts, and nodes/links/SAEs when few."""
    g = topo.qkd_graph()
    simple = nx.Graph(g)
    lines = [f"{topo.name}: {topology.summary(topo)}"]
    if topo.description:
        lines.append(f"  {topo.description}")
    if topo.source:
        lines.append(f"  source: {topo.source}")
    lengths = [link.length_km for link in topo.links if link.length_km is not None]
    rates = [link.rate_bps for link in topo.links]
    degrees = [d for _, d in g.degree]
    lines.append(f"  degree: mean {sum(degrees) / len(degrees):.2f}, max {max(degrees)}; "
                 f"independent cycles: {simple.number_of_edges() - simple.number_of_nodes() + 1}")
    if lengths:
        lines.append(f"  fibre: {sum(lengths):.1f} km total, links {min(lengths):g}..{max(lengths):g} km")
    if rates:
        lines.append(f"  key rate: {_rate(min(rates))} .. {_rate(max(rates))}")
    if len(topo.nodes) <= SHOW_LIMIT:
        lines.append("  nodes:")
        for n in topo.nodes.values():
            saes = ", ".join(s.id for s in topo.saes_of(n.id))
            lines.append(f"    {n.id:<18} trust {n.trust}  {n.role:<7}  degree {g.degree[n.id]}"
                         + (f"  SAEs: {saes}" if saes else ""))
    if len(topo.links) <= SHOW_LIMIT:
        lines.append("  links:")
        for link in topo.links:
            km = f"{link.length_km:g} km" if link.length_km is not None else "-"
            kms = "" if link.kms == "simulated" else f"  kms {link.kms} {link.kms_url}"
            lines.append(f"    {link.id:<26} {km:>9}  {_rate(link.rate_bps):>10}{kms}")
    if len(topo.saes) > SHOW_LIMIT:
        lines.append(f"  SAEs: {len(topo.saes)} (e.g. {', '.join(list(topo.saes)[:5])}, ...)")
    return "\n".join(lines) + "\n"


def show(spec: str, out: TextIO, svg: str | None = None) -> int:
    try:
        topo = topology.load(spec)
    except topology.TopologyError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 1
    if svg:
        from mininet_topos.render import render_svg
        try:
            Path(svg).write_text(render_svg(topo))
        except OSError as exc:
            print(f"qkdnet topo show: cannot write {svg}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"{svg}: {topo.name}, {topology.summary(topo)}", file=out)
        return 0
    out.write(describe(topo))
    return 0


def _run(args: argparse.Namespace) -> int:
    out = sys.stdout
    if args.topo_cmd == "list":
        return list_shipped(out)
    if args.topo_cmd == "mesh":
        return write_mesh(args.n, args.seed, args.output, out)
    if args.topo_cmd == "show":
        return show(args.spec, out, args.svg)
    args.topo_parser.print_help()
    return 2


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("topo", help="list, generate and show topologies",
                            description="Topologies: the shipped ones, synthetic meshes, summaries.")
    cmds = parser.add_subparsers(dest="topo_cmd", metavar="ACTION")
    cmds.add_parser("list", help="list shipped topologies with their sizes")
    mesh = cmds.add_parser("mesh", help="write a seeded synthetic mesh as topology TOML",
                           description="Random geometric mesh: N points in a 40*sqrt(N) km square, "
                                       "each joined to its 3 nearest neighbours, made connected.")
    mesh.add_argument("n", type=int, metavar="N", help="number of nodes")
    mesh.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    mesh.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    show_p = cmds.add_parser("show", help="summarise a topology (file, shipped name or mesh:N[:SEED])")
    show_p.add_argument("spec", metavar="SPEC")
    show_p.add_argument("--svg", metavar="OUT", help="draw it as SVG to OUT instead (nodes at their "
                        "location, else a stable layout; link key rates; domains)")
    parser.set_defaults(func=_run, topo_parser=parser)
