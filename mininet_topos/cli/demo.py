"""``qkdnet demo [TOPOLOGY] [--local] [--json]``: a QKD network up, keys across it, a failure, down.

The scenario: bring the network up (Mininet + OVS under QuSeC, or ``--local`` processes);
for SAE pairs at least three hops apart, the master SAE calls ETSI 014 ``enc_keys`` and the
slave ``dec_keys`` (inside their Mininet hosts), the keys are compared (by digest), the relay
path and QuSeC's installed flows are shown; then a link on the path goes down (``--local``:
the first relay node's agent stops) and the next key must arrive over the rerouted path; then a
QKD link of the current path raises an alarm (its QBER set above the 11 % threshold at both
ends, ``qkdnet qlink``), QuSeC shows the alarm, the next key takes another path, and the fault
is cleared. Exit 0 only when every check held. On a multi-domain topology the demo is
``mininet_topos.cli.demo_domains``'s: keys between domains, an interworking node down, the reroute.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

from mininet_topos.cli.democheck import Check, closing_lines
from mininet_topos.model import Topology

log = logging.getLogger(__name__)

DEFAULT_TOPOLOGY = "metro8"
MIN_HOPS = 3
KEYS_PER_PAIR = 3
REROUTE_DEADLINE_S = 20.0
ALARM_QBER = 0.2                 # above the 11 % BB84 threshold: the link raises an alarm
ALARM_DEADLINE_S = 5.0           # for QuSeC to show the alarm (the ends report it at once)
STEPS = ("[1/5] bringing the network up", "[2/5] keys between SAEs far apart",
         "[3/5] {failure}: rerouting", "[4/5] a QKD link raises an alarm (QBER above 11 %): rerouting",
         "[5/5] tearing down")
FAILURES = {"link_down": "a link on the path fails", "node_down": "a relay node's agent stops"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="bring a QKD network up, relay keys across it, fail a link, raise a QKD link "
                            "alarm, tear down",
                       description="Bring a QKD network up, let SAEs at least three hops apart get keys "
                                   "through ETSI 014 (enc_keys at one end, dec_keys at the other), compare "
                                   "them, show the relay path and QuSeC's flows, take a link on the path "
                                   "down and get the next key over the rerouted path, raise a QKD link's QBER "
                                   "above the 11 % threshold and get the next key over another path, "
                                   "then tear down. "
                                   "Exit 0 only when every check held.")
    p.add_argument("topology", nargs="?", default=DEFAULT_TOPOLOGY,
                   help=f"topology file, shipped name or mesh:N[:SEED] (default: {DEFAULT_TOPOLOGY})")
    p.add_argument("--local", action="store_true",
                   help="plain processes on loopback instead of Mininet (no root, no OpenFlow)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of progress")
    p.add_argument("--keys", type=int, default=KEYS_PER_PAIR, help="keys per SAE pair (default 3)")
    p.add_argument("--state-dir", help="state directory (default: /tmp/qkdnet-demo-TOPOLOGY)")
    p.set_defaults(func=run)


def far_pairs(topology: Topology, min_hops: int = MIN_HOPS, limit: int = 2) -> list[tuple[str, str, int]]:
    """SAE pairs (master, slave, hops) at least ``min_hops`` apart, farthest first, each SAE once."""
    import networkx as nx
    g = topology.qkd_graph()
    saes = sorted(topology.saes.values(), key=lambda s: s.id)
    cands = []
    for i, a in enumerate(saes):
        for b in saes[i + 1:]:
            if a.node != b.node:
                h = nx.shortest_path_length(g, a.node, b.node)
                if h >= min_hops:
                    cands.append((-h, a.id, b.id))
    out, used = [], set()
    for neg_h, a, b in sorted(cands):
        if a in used or b in used:
            continue
        out.append((a, b, -neg_h))
        used |= {a, b}
        if len(out) == limit:
            break
    return out


# -- the two back-ends -------------------------------------------------------------------------
class MininetBackend:
    """The scenario's operations on a MininetNetwork."""

    mode = "mininet"

    def __init__(self, topology: Topology, state_dir: Path | None, progress: Any, *,
                 net: Any = None) -> None:
        """A new network for ``topology``, or (``net``) one that is already running."""
        from mininet_topos.launch.mininet import MininetNetwork
        self.net = net or MininetNetwork(topology, state_dir, progress=progress)
        self.failed: tuple[str, str] | None = None
        self.names = {h.ip: h.node for h in self.net.plan.node_hosts}

    def start(self) -> float:
        if self.net.net is None:
            self.net.start()
        return self.net.timings.get("ready", 0.0)

    def stop(self) -> None:
        self.net.stop()

    def key_pair(self, master: str, slave: str, number: int, fresh: bool = False) -> dict:
        return self.net.key_pair(master, slave, number, fresh=fresh)

    def status(self) -> dict:
        return self.net.status()

    def relay_flows(self, nodes: list[str]) -> dict[str, list[str]]:
        return {n: self.net.relay_flows(n) for n in nodes}

    def fail(self, path: list[str]) -> dict:
        """Take the classical link between the first two relay hops of ``path`` down."""
        i = 1 if len(path) > 3 else 0
        a, b = path[i], path[i + 1]
        self.failed = (a, b)
        self.net.set_link(a, b, up=False)
        pa, pb = self.net.net.topo.port(self.net.switch_name(a), self.net.switch_name(b))
        return {"kind": "link_down", "link": [a, b],
                "switches": [self.net.switch_name(a), self.net.switch_name(b)], "ports": [pa, pb]}

    def hop_route(self, a: str, b: str) -> list[str] | None:
        return self.net.relay_route(a, b)

    def uses_failed(self, failure: dict) -> list[str]:
        """Relay flows that still send out of a port of the failed link."""
        bad = []
        for node, port in zip(failure["link"], failure["ports"]):
            bad += [f"{node}: {l}" for l in self.net.relay_flows(node)
                    if re.search(rf"output:{port}\b", l)]
        return bad

    def restore(self) -> None:
        if self.failed:
            self.net.set_link(*self.failed, up=True)
            self.failed = None


class LocalBackend:
    """The scenario on loopback processes (mininet_topos.launch.local): no switches, so no flows."""

    mode = "local"
    names: dict[str, str] = {}

    def __init__(self, topology: Topology, state_dir: Path, progress: Any) -> None:
        from mininet_topos.launch.local import LocalNetwork
        self.net = LocalNetwork(topology, state_dir, progress=progress)
        self.doc: dict = {}

    def start(self) -> float:
        t = time.monotonic()
        self.net.start()
        self.doc = json.loads(self.net.network_json.read_text())
        return round(time.monotonic() - t, 3)

    def stop(self) -> None:
        self.net.stop()

    def key_pair(self, master: str, slave: str, number: int, fresh: bool = False) -> dict:
        from mininet_topos.launch.keypair import client_pair
        return client_pair(self.doc, master, slave, number, fresh=fresh)

    def status(self) -> dict:
        return self.net.operator.status() if self.net.operator is not None else {}

    def relay_flows(self, nodes: list[str]) -> dict[str, list[str]]:
        return {}

    def fail(self, path: list[str]) -> dict:
        """Stop the agent of the first relay node on ``path`` (there are no links to pull)."""
        node = path[1]
        proc = self.net.procs[node]
        proc.terminate()
        proc.wait(10)
        return {"kind": "node_down", "node": node}

    def uses_failed(self, failure: dict) -> list[str]:
        return []

    def hop_route(self, a: str, b: str) -> list[str] | None:
        return None

    def restore(self) -> None:
        pass


# -- the scenario --------------------------------------------------------------------------------
def scenario(backend: Any, topology: Topology, pairs: list[tuple[str, str, int]], keys: int,
             say: Callable[[str], None]) -> dict:
    """Run the demo's steps on a started backend; returns the JSON result (``ok`` = all checks)."""
    check = Check(say)
    result: dict[str, Any] = {"topology": topology.name, "mode": backend.mode, "pairs": [],
                              "flows_installed": 0}
    flows_seen = 0
    say(f"\n{STEPS[1]}")
    for master, slave, hops in pairs:
        say(f"  {master} (on node {topology.saes[master].node}) -> {slave} (on node "
            f"{topology.saes[slave].node}), {hops} QKD hops apart: {keys} keys, enc_keys in "
            f"{master}'s host, dec_keys in {slave}'s")
        r = backend.key_pair(master, slave, keys)
        flows = backend.relay_flows(r.get("path") or [])
        n_flows = sum(len(v) for v in flows.values())
        flows_seen += n_flows
        result["pairs"].append({"src_sae": master, "dst_sae": slave, "path": r.get("path", []),
                                "keys_requested": keys, "keys_matched": r.get("keys_matched", 0),
                                "hops": hops, "seconds": r.get("seconds"), "relay_flows": n_flows,
                                **({"error": r["error"]} if r.get("error") else {})})
        check(f"{master} -> {slave}: {keys} keys delivered and identical at both ends",
              r.get("ok", False), r.get("error", "") or f"{r.get('keys_matched', 0)}/{keys} match "
              f"in {r.get('seconds', 0):.2f} s")
        path = r.get("path") or []
        if path:
            say(f"  relay path chosen by QuSeC: {' -> '.join(path)} ({len(path) - 1} hops)")
        check(f"{master} -> {slave}: relayed over >= {MIN_HOPS} hops",
              len(path) - 1 >= MIN_HOPS, " -> ".join(path) or "no path reported")
        if backend.mode == "mininet" and path:
            say("  relay flows QuSeC installed on the switches of the path (A->B:7000 = node A's relay "
                "traffic to node B's relay port, 'from :7000' = B's replies, 'out N' = switch port):")
            for node, lines in flows.items():
                if lines:
                    say(f"    {node}'s switch: " + ", ".join(short_flow(l, backend.names) for l in lines))
            check(f"{master} -> {slave}: QuSeC installed relay flows along the path",
                  n_flows > 0 and all(flows.get(n) for n in path), f"{n_flows} relay flows on "
                  f"{sum(1 for n in path if flows.get(n))}/{len(path)} switches")
    try:
        st = backend.status()
        result["flows_installed"] = int(st.get("flows_installed") or st.get("core", {}).get("flows", 0)) \
            or flows_seen
    except OSError:
        result["flows_installed"] = flows_seen
    if result["pairs"] and result["pairs"][0]["path"]:
        result["reroute"] = reroute(backend, result["pairs"][0], check, say)
        result["qkd_alarm"] = qkd_alarm(backend, topology, result["pairs"][0], result["reroute"],
                                        check, say)
    else:
        check("reroute after a failure", False, "no path to fail")
    result["checks"] = check.items
    result["ok"] = check.ok
    return result


def reroute(backend: Any, pair: dict, check: Check, say: Callable[[str], None]) -> dict:
    """Fail a hop of ``pair``'s path and time the first key that gets through afterwards."""
    master, slave, before = pair["src_sae"], pair["dst_sae"], pair["path"]
    failure = backend.fail(before)
    t0 = time.monotonic()
    what = (f"link {failure['link'][0]}-{failure['link'][1]}" if failure["kind"] == "link_down"
            else f"node {failure['node']}'s agent")
    say(f"\n{STEPS[2].format(failure=FAILURES[failure['kind']])}\n  {what} goes down; the next key "
        f"{master} -> {slave} must take another route")
    r: dict = {}
    attempts = 0
    while time.monotonic() - t0 < REROUTE_DEADLINE_S:
        attempts += 1
        r = backend.key_pair(master, slave, 1, fresh=True)
        if r.get("ok"):
            break
        time.sleep(0.2)
    reroute_s = round(time.monotonic() - t0, 3)
    after = r.get("path") or []
    out = {"failure": failure, "path_before": before, "path_after": after, "keys_requested": 1,
           "keys_matched": r.get("keys_matched", 0), "reroute_s": reroute_s, "attempts": attempts}
    check("key after the failure delivered and identical", r.get("ok", False),
          r.get("error", "") or f"{reroute_s:.2f} s after the failure, {attempts} attempt(s), "
          f"path {' -> '.join(after)}")
    if failure["kind"] == "link_down":
        stale = backend.uses_failed(failure)
        check("no relay flow still uses the failed link", not stale, "; ".join(stale[:2]))
        a, b = failure["link"]
        changed = after != before
        say(f"  path before {' -> '.join(before)}; after {' -> '.join(after)}"
            + ("" if changed else f" (same trusted nodes; the {a}-{b} hop now takes another switch route)"))
        if after and not changed:
            route = backend.hop_route(a, b)
            out["hop_route"] = route
            check(f"relay traffic {a} -> {b} follows QuSeC's flows around the failed link",
                  bool(route) and route[:2] != [a, b],
                  f"switches {' -> '.join(route)}" if route else "flows do not lead to the host")
        # The path's switches plus those the rerouted hop now crosses.
        flows = backend.relay_flows(after + [n for n in out.get("hop_route") or [] if n not in after])
        say("  relay flows now:")
        for node, lines in flows.items():
            if lines:
                say(f"    {node}'s switch: " + ", ".join(short_flow(l, backend.names) for l in lines))
    else:
        check("rerouted path avoids the stopped node", bool(after) and failure["node"] not in after,
              " -> ".join(after) or "no key got through")
    backend.restore()
    return out


def alarm_link(topology: Topology, path: list[str], src: str, dst: str,
               stopped: str | None = None) -> tuple[str, str] | None:
    """The first QKD hop of ``path`` whose loss leaves ``src`` and ``dst`` joined (without the
    ``stopped`` node), or None when every hop is a bridge."""
    import networkx as nx
    g = nx.Graph(topology.qkd_graph())
    if stopped and stopped in g:
        g.remove_node(stopped)
    for a, b in zip(path, path[1:]):
        h = g.copy()
        if h.has_edge(a, b):
            h.remove_edge(a, b)
        if src in h and dst in h and nx.has_path(h, src, dst):
            return a, b
    return None


def qkd_alarm(backend: Any, topology: Topology, pair: dict, rerouted: dict, check: Check,
              say: Callable[[str], None]) -> dict:
    """Raise the QBER of a QKD link on ``pair``'s current path above the threshold (both ends),
    see QuSeC show the alarm, get a key over another path, then clear the fault."""
    from mininet_topos.cli import qlink
    master, slave = pair["src_sae"], pair["dst_sae"]
    before = rerouted.get("path_after") or pair["path"]
    failure = rerouted.get("failure") or {}
    src, dst = topology.saes[master].node, topology.saes[slave].node
    hop = alarm_link(topology, before, src, dst, failure.get("node"))
    say(f"\n{STEPS[3]}")
    out: dict[str, Any] = {"path_before": before, "qber": ALARM_QBER}
    if hop is None:
        check("a QKD link alarm moves the path", False, f"every QKD hop of {' -> '.join(before)} "
              "is the only way between the SAEs' nodes")
        return out
    a, b = hop
    network = backend.net.network_json
    say(f"  QKD link {a}-{b}: QBER {ALARM_QBER:g} at both ends (qkdnet qlink {a} {b} qber "
        f"{ALARM_QBER:g}); the module stops making key, the next key {master} -> {slave} must "
        "take another path")
    t0 = time.monotonic()
    try:
        ends = qlink.apply(network, a, b, ["qber", str(ALARM_QBER)])
    except qlink.QlinkError as exc:
        check(f"QKD link {a}-{b} raises an alarm", False, str(exc))
        return out
    ids = sorted({e["link_id"] for e in ends})
    out.update(link=[a, b], link_ids=ids, alarm=ends[0].get("alarm", "") if ends else "")
    shown: dict = {}
    t_set = time.monotonic()   # the wait starts once both ends are set (that can take seconds when loaded)
    while time.monotonic() - t_set < ALARM_DEADLINE_S:
        try:
            links = backend.status().get("core", {}).get("links", {})
        except OSError:
            links = {}
        shown = {lid: links.get(lid, {}) for lid in ids}
        if shown and all(x.get("status") == "OFF" and x.get("alarm") for x in shown.values()):
            break
        time.sleep(0.1)
    out["alarm_s"] = round(time.monotonic() - t0, 3)
    ok = bool(shown) and all(x.get("status") == "OFF" and x.get("alarm") for x in shown.values())
    check(f"QuSeC shows the alarm on QKD link {a}-{b}", ok,
          "; ".join(f"{lid}: {x.get('status', '?')} alarm={x.get('alarm') or '-'} "
                    f"qber={x.get('qber', 0):g}" for lid, x in shown.items())
          + f" ({out['alarm_s']:.2f} s after the fault)")
    r: dict = {}
    while time.monotonic() - t0 < REROUTE_DEADLINE_S:
        r = backend.key_pair(master, slave, 1, fresh=True)
        if r.get("ok"):
            break
        time.sleep(0.2)
    # The path that carried it, as QuSeC holds it: a path QuSeC moved keeps its id, and its
    # source (still on it) is not told the new relays, so the key's own path extension can name
    # the old ones.
    try:
        held = [p["nodes"] for p in backend.status().get("core", {}).get("paths", {}).values()
                if p["nodes"][:1] == [src] and p["nodes"][-1:] == [dst]]
    except OSError:
        held = []
    after = held[-1] if held else r.get("path") or []
    out.update(path_after=after, keys_requested=1, keys_matched=r.get("keys_matched", 0),
               reroute_s=round(time.monotonic() - t0, 3))
    avoids = bool(after) and not any({x, y} == {a, b} for p in held or [after] for x, y in zip(p, p[1:]))
    check(f"key after the alarm delivered over a path without {a}-{b}", r.get("ok", False) and avoids,
          r.get("error", "") or f"path {' -> '.join(after)} ({out['reroute_s']:.2f} s after the fault)")
    try:
        qlink.apply(network, a, b, ["up"])
        out["cleared"] = True
    except qlink.QlinkError as exc:
        out["cleared"] = False
        check(f"QKD link {a}-{b} fault cleared", False, str(exc))
    else:
        t1 = time.monotonic()
        back: dict = {}
        while time.monotonic() - t1 < ALARM_DEADLINE_S:
            try:
                links = backend.status().get("core", {}).get("links", {})
            except OSError:
                links = {}
            back = {lid: links.get(lid, {}) for lid in ids}
            if all(x.get("status") not in (None, "OFF") and not x.get("alarm") for x in back.values()):
                break
            time.sleep(0.1)
        out["cleared_s"] = round(time.monotonic() - t1, 3)
        check(f"QKD link {a}-{b} usable again once cleared (qkdnet qlink {a} {b} up)",
              all(x.get("status") not in (None, "OFF") and not x.get("alarm") for x in back.values()),
              "; ".join(f"{lid}: {x.get('status', '?')}" for lid, x in back.items())
              + f" ({out['cleared_s']:.2f} s after clearing)")
    return out


def short_flow(line: str, names: dict[str, str] | None = None) -> str:
    """A relay flow as ``A->B :port out N`` (``names`` maps IPs to node ids)."""
    names = names or {}
    f = dict(re.findall(r"(nw_src|nw_dst|tp_src|tp_dst)=([\d.]+)", line))
    out = re.search(r"actions=(\S+)", line)
    if "nw_src" not in f or "nw_dst" not in f:
        return line
    src, dst = names.get(f["nw_src"], f["nw_src"]), names.get(f["nw_dst"], f["nw_dst"])
    port = f":{f['tp_dst']}" if "tp_dst" in f else f" from :{f.get('tp_src', '?')}"
    return f"{src}->{dst}{port} {out.group(1).replace('output:', 'out ') if out else ''}".strip()


# -- entry ---------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from mininet_topos import topology as topo_mod
    t_start = time.monotonic()
    try:
        topo = topo_mod.load(args.topology)
    except topo_mod.TopologyError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    if topo.multi_domain:
        return run_domains(args, topo, t_start)
    pairs = far_pairs(topo)
    if not pairs:
        print(f"qkdnet demo: {topo.name} has no SAE pair at least {MIN_HOPS} hops apart", file=sys.stderr)
        return 1
    if not args.local and os.geteuid() != 0:
        print("qkdnet demo: Mininet needs root; run as root or use --local", file=sys.stderr)
        return 2
    say, progress = _output(args)
    state = Path(args.state_dir or f"/tmp/qkdnet-demo-{topo.name}")
    say(f"QuSeC demo on {topo.name} ({'local processes' if args.local else 'Mininet + Open vSwitch'}): "
        f"{len(topo.nodes)} trusted nodes, {len(topo.links)} QKD links, SAE pairs "
        + ", ".join(f"{a} <-> {b} ({h} hops)" for a, b, h in pairs))
    if args.local:
        result = _run_backend(LocalBackend(topo, state, progress), topo, pairs, args.keys, say)
    else:
        from mininet_topos.launch.lock import mininet_lock
        with mininet_lock(progress):
            backend = MininetBackend(topo, state, progress)
            result = _run_backend(backend, topo, pairs, args.keys, say)
            if not result.get("started", True):
                backend.net.cleanup()
    return _finish(args, result, t_start, summary)


def run_domains(args: argparse.Namespace, topo: Topology, t_start: float) -> int:
    """The demo on a multi-domain topology (``mininet_topos.cli.demo_domains``)."""
    from mininet_topos.cli import demo_domains
    pairs = demo_domains.cross_pairs(topo)
    if not pairs:
        print(f"qkdnet demo: {topo.name} has no SAE pair in different domains joined by an interworking "
              "site", file=sys.stderr)
        return 1
    if not args.local and os.geteuid() != 0:
        print("qkdnet demo: Mininet needs root; run as root or use --local", file=sys.stderr)
        return 2
    say, progress = _output(args)
    state = Path(args.state_dir or f"/tmp/qkdnet-demo-{topo.name}")
    say(f"QuSeC demo on {topo.name} ({'local processes' if args.local else 'Mininet + Open vSwitch'}): "
        f"{len(topo.domains)} domains ({', '.join(topo.domains)}) under a parent controller, "
        f"{len(topo.interworking)} interworking site(s), {len(topo.pqc_links)} PQC link(s); SAE pairs "
        + ", ".join(f"{a} <-> {b} ({n} site(s))" for a, b, n in pairs))
    net = demo_domains.network(topo, state, args.local, progress)
    if args.local:
        result = demo_domains.run_demo(net, topo, pairs, args.keys, say)
    else:
        from mininet_topos.launch.lock import mininet_lock
        with mininet_lock(progress):
            result = demo_domains.run_demo(net, topo, pairs, args.keys, say)
            if not result.get("started", True):
                net.cleanup()
    return _finish(args, result, t_start, demo_domains.summary)


def _output(args: argparse.Namespace) -> tuple[Callable[[str], None], Any]:
    """The demo's ``say`` (silent with ``--json``) and the launchers' progress stream."""
    quiet = args.json

    def say(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    return say, None if quiet else sys.stdout


def _finish(args: argparse.Namespace, result: dict, t_start: float, summarise: Callable[[dict], str]) -> int:
    """Print the result (JSON, or the summary lines) and give the exit code."""
    result.pop("started", None)
    result["total_s"] = round(time.monotonic() - t_start, 1)
    print(json.dumps(result, indent=2) if args.json else "\n" + summarise(result))
    return 0 if result["ok"] else 1


def summary(result: dict) -> str:
    """The demo's last lines: OK/FAILED, checks, keys matched, flows, reroute, times."""
    checks = result.get("checks", [])
    passed = sum(1 for c in checks if c["ok"])
    pairs = result.get("pairs", [])
    lines = [f"{'DEMO OK' if result.get('ok') else 'DEMO FAILED'}: {passed}/{len(checks)} checks held"]
    if pairs:
        lines.append("  keys matched: " + ", ".join(
            f"{p['src_sae']}->{p['dst_sae']} {p['keys_matched']}/{p['keys_requested']}" for p in pairs)
            + f"; OpenFlow rules QuSeC installed (base + relay, all switches): "
            f"{result.get('flows_installed', 0)}")
    rr = result.get("reroute")
    if rr:
        lines.append(f"  reroute: first key {rr['reroute_s']:.2f} s after the failure, path "
                     f"{' -> '.join(rr['path_after']) or 'none'}")
    qa = result.get("qkd_alarm")
    if qa and qa.get("link"):
        lines.append(f"  QKD link alarm on {'-'.join(qa['link'])}: shown by QuSeC in "
                     f"{qa.get('alarm_s', 0):.2f} s, next key over "
                     f"{' -> '.join(qa.get('path_after') or []) or 'none'}")
    return "\n".join(lines + closing_lines(result))


def _run_backend(backend: Any, topo: Topology, pairs: list, keys: int, say: Callable[[str], None]) -> dict:
    started = False
    try:
        say(f"\n{STEPS[0]}")
        bringup = backend.start()
        started = True
        result = scenario(backend, topo, pairs, keys, say)
        result["bringup_s"] = bringup
    except Exception as exc:  # noqa: BLE001 - the demo reports any failure as a failed check
        log.warning("demo step failed", exc_info=True)
        result = {"topology": topo.name, "mode": backend.mode, "pairs": [], "flows_installed": 0,
                  "ok": False, "error": f"{type(exc).__name__}: {exc}", "started": started}
        say(f"\nFAILED: {result['error']}")
    finally:
        say(f"\n{STEPS[4]}")
        backend.stop()
        say("  stopped: agents, network, QuSeC")
    return result
