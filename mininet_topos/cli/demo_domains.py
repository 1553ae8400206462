"""``qkdnet demo TOPOLOGY`` on a multi-domain topology (e.g. beijing_shanghai3): every domain up
under the parent controller (Mininet, or ``--local`` processes); keys between SAEs of different
domains (enc_keys at the master's KME, dec_keys by ID at the slave's, compared), each domain's
segment and the interworking sites the key crossed over ETSI GS QKD 020 (from each domain
QuSeC's event log); then an interworking node fails (a site KME's agent stops) and the next key
takes another site, or, when the topology has no other site between the two domains, the
parent's chain moves to what is left (a PQC link: the key at the post-quantum level, or refused
at once with the reason while PQC crossings are not built) or the request is refused at once;
a key that does not cross the failed site still flows; teardown. Exit 0 only when every check held.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

from mininet_topos.cli.democheck import Check, closing_lines
from mininet_topos.model import Topology

STEPS = ("[1/4] bringing every domain up under the parent controller",
         "[2/4] keys between SAEs in different domains (ETSI GS QKD 020 at every interworking site)",
         "[3/4] an interworking node fails: {what}",
         "[4/4] tearing down")
FIRST_KEY_DEADLINE_S = 30.0   # the parent may take an export or two to know every SAE
FAILOVER_DEADLINE_S = 45.0    # the border exported down: one interval + QuSeC's agent-gone grace
AT_ONCE_S = 5.0               # a refusal by the parent comes before any key is made
_CHAIN_LINE = re.compile(r"event=chain .*?dst_sae=(\S+) domains=(\S+) via=(\S*)")


def site_graph(topology: Topology, without: str | None = None, pqc: bool = False) -> Any:
    """Domains joined by interworking sites (and, with ``pqc``, PQC links), without site ``without``."""
    import networkx as nx
    g = nx.Graph()
    g.add_nodes_from(topology.domains)
    for a, b, data in topology.domain_graph().edges(data=True):
        if (data["kind"] == "etsi020" and data["site"] != without) or (pqc and data["kind"] == "pqc"):
            g.add_edge(a, b)
    return g


def cross_pairs(topology: Topology, limit: int = 2) -> list[tuple[str, str, int]]:
    """SAE pairs (master, slave, sites) in different domains joined by interworking sites, the
    most sites between them first, each SAE once."""
    import networkx as nx
    g = site_graph(topology)
    dom = {s.id: topology.nodes[s.node].domain for s in topology.saes.values()}
    cands = []
    ids = sorted(dom)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if dom[a] != dom[b] and nx.has_path(g, dom[a], dom[b]):
                cands.append((-nx.shortest_path_length(g, dom[a], dom[b]), a, b))
    out, used = [], set()
    for neg, a, b in sorted(cands):
        if a in used or b in used:
            continue
        out.append((a, b, -neg))
        used |= {a, b}
        if len(out) == limit:
            break
    return out


def alternative(topology: Topology, src_dom: str, dst_dom: str, site: str) -> str:
    """What joins the two domains once ``site`` is gone: "site" (another interworking site),
    "pqc" (a PQC link only) or "none"."""
    import networkx as nx
    if nx.has_path(site_graph(topology, without=site), src_dom, dst_dom):
        return "site"
    if nx.has_path(site_graph(topology, without=site, pqc=True), src_dom, dst_dom):
        return "pqc"
    return "none"


def site_to_fail(topology: Topology, chain: list[dict], src_dom: str, dst_dom: str) -> tuple[str, str, str]:
    """(site, KME to stop, the alternative): a site of ``chain`` whose loss leaves another site
    where one exists, else the chain's last; the KME stopped is its exit (the domain before it)."""
    sites = [seg["crossing"] for seg in chain if seg.get("crossing")]
    best = next((s for s in reversed(sites) if alternative(topology, src_dom, dst_dom, s) == "site"),
                sites[-1])
    seg = next(seg for seg in chain if seg.get("crossing") == best)
    node = next(k for k in next(s for s in topology.interworking if s.id == best).kmes
                if topology.nodes[k].domain == seg["domain"])
    return best, node, alternative(topology, src_dom, dst_dom, best)


# -- what the domains' QuSeCs say -----------------------------------------------------------------
def marks(net: Any) -> dict[str, int]:
    """Every domain's last event number now (its /events ``last_seq``)."""
    out = {}
    for dom, part in net.domains.items():
        try:
            out[dom] = int(part.operator.events(limit=1, timeout=5).get("last_seq", 0))
        except (OSError, ValueError):
            out[dom] = 0
    return out


def chain_of(net: Any, since: dict[str, int], master: str, slave: str) -> list[dict]:
    """The segments QuSeCs granted for ``master`` -> ``slave`` after ``since``, in time order:
    each domain's newest grant (domain, path, and the crossing and peer KME it hands off to)."""
    newest: dict[str, dict] = {}
    for dom, part in net.domains.items():
        try:
            evs = part.operator.events(since=since.get(dom, 0), timeout=5).get("events", [])
        except (OSError, ValueError):
            continue
        for e in evs:
            if e.get("kind") == "path_granted" and e.get("dst_sae") == slave and e.get("src_sae") in (None, master):
                newest[dom] = e
    out = [{"domain": dom, "path": (e.get("paths") or [[]])[0], "time": e.get("time", 0),
            **({"crossing": e["crossing"], "peer_kme": e.get("peer_kme", "")} if e.get("crossing") else {})}
           for dom, e in newest.items()]
    return sorted(out, key=lambda s: s["time"])


def chain_text(chain: list[dict]) -> str:
    parts = []
    for seg in chain:
        parts.append(f"{seg['domain']}: {' -> '.join(seg['path'])}")
        if seg.get("crossing"):
            parts.append(f"=={seg['crossing']} (ETSI 020 to {seg['peer_kme']})==>")
    return "  ".join(parts) or "(no segment in the event logs)"


def logged_chains(net: Any, domain: str, offset: int, slave: str) -> list[tuple[list[str], list[str]]]:
    """The parent's chains ``domain``'s gateway logged after byte ``offset`` for ``slave``:
    (domains, crossings) each."""
    try:
        with open(net.domains[domain].controller.gateway_log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except (OSError, AttributeError):
        return []
    return [(m.group(2).split(","), [x for x in m.group(3).split(",") if x])
            for m in _CHAIN_LINE.finditer(text) if m.group(1) == slave]


def log_size(net: Any, domain: str) -> int:
    try:
        return Path(net.domains[domain].controller.gateway_log).stat().st_size
    except (OSError, AttributeError):
        return 0


def error_text(r: dict) -> str:
    err = r.get("error") or {}
    body = err.get("body") if isinstance(err, dict) else None
    msg = (body or {}).get("message") if isinstance(body, dict) else None
    status = err.get("status") if isinstance(err, dict) else None
    return f"HTTP {status}: {msg or body}" if status else str(err.get("message", err) if isinstance(err, dict) else err)


# -- the scenario --------------------------------------------------------------------------------
def keys_until_chained(net: Any, master: str, slave: str, number: int) -> dict:
    """A key pair, asked again while the parent does not know the slave yet (400, 503)."""
    deadline = time.monotonic() + FIRST_KEY_DEADLINE_S
    while True:
        r = net.key_pair(master, slave, number)
        status = (r.get("error") or {}).get("status") if isinstance(r.get("error"), dict) else None
        if r.get("ok") or status not in (400, 503) or time.monotonic() > deadline:
            return r
        time.sleep(1.0)


def scenario(net: Any, topology: Topology, pairs: list[tuple[str, str, int]], keys: int,
             say: Callable[[str], None]) -> dict:
    check = Check(say)
    dom_of = {s.id: topology.nodes[s.node].domain for s in topology.saes.values()}
    result: dict[str, Any] = {"topology": topology.name, "mode": net.mode, "domains": list(topology.domains),
                              "pairs": []}
    say(f"\n{STEPS[1]}")
    for master, slave, sites in pairs:
        say(f"  {master} ({dom_of[master]}, node {topology.saes[master].node}) -> {slave} ({dom_of[slave]}, "
            f"node {topology.saes[slave].node}), {sites} interworking site(s) apart: {keys} key(s)")
        since = marks(net)
        r = keys_until_chained(net, master, slave, keys)
        chain = chain_of(net, since, master, slave)
        crossings = [seg["crossing"] for seg in chain if seg.get("crossing")]
        entry = {"src_sae": master, "dst_sae": slave, "src_domain": dom_of[master], "dst_domain": dom_of[slave],
                 "keys_requested": keys, "keys_matched": r.get("keys_matched", 0), "path": r.get("path", []),
                 "security_level": (r.get("extension") or {}).get("qusec_security_level", ""),
                 "chain": chain, "crossings": crossings, "seconds": r.get("seconds"),
                 **({"error": error_text(r)} if r.get("error") else {})}
        result["pairs"].append(entry)
        check(f"{master} -> {slave}: {keys} key(s) delivered, dec_keys at the slave matches", r.get("ok", False),
              entry.get("error", "") or f"{entry['keys_matched']}/{keys} match in {r.get('seconds', 0):.2f} s")
        say(f"  the chain, as each domain's QuSeC granted its segment: {chain_text(chain)}")
        check(f"{master} -> {slave}: every domain of the chain authorised its own segment, handing off over "
              f"{sites} interworking site(s)",
              len(crossings) == sites and bool(chain) and chain[0]["domain"] == dom_of[master]
              and chain[-1]["domain"] == dom_of[slave]
              and chain[-1]["path"][-1:] == [topology.saes[slave].node],
              f"domains {' -> '.join(s['domain'] for s in chain) or 'none'}, sites {', '.join(crossings) or 'none'}")
    first = result["pairs"][0] if result["pairs"] else None
    if first and first["chain"] and first["crossings"]:
        result["failure"], result["reroute"] = fail_site(net, topology, first, result["pairs"][1:], keys,
                                                         check, say)
    else:
        check("an interworking node fails: the next key reroutes or is refused at once", False,
              "no inter-domain chain to fail")
    result["checks"] = check.items
    result["ok"] = check.ok
    return result


def fail_site(net: Any, topology: Topology, pair: dict, others: list[dict], keys: int, check: Check,
              say: Callable[[str], None]) -> tuple[dict, dict]:
    master, slave, src_dom = pair["src_sae"], pair["dst_sae"], pair["src_domain"]
    site, node, alt = site_to_fail(topology, pair["chain"], src_dom, pair["dst_domain"])
    dom = topology.nodes[node].domain
    expect = {"site": "the next key goes through another interworking site",
              "pqc": "no other site joins the domains, only a PQC link: the parent's chain moves to it (a key at "
                     "the post-quantum level, or refused at once with the reason while PQC crossings are not built)",
              "none": "nothing else joins the domains: refused at once with the reason"}[alt]
    say(f"\n{STEPS[2].format(what=f'{node} ({dom}), a KME of site {site}, stops')}\n  {expect}")
    failure = {"kind": "site_kme_down", "site": site, "node": node, "domain": dom, "alternative": alt}
    proc = net.domains[dom].fleet.procs[node]
    proc.terminate()
    proc.wait(10)
    t0 = time.monotonic()
    since = marks(net)
    out: dict[str, Any] = {"outcome": "", "attempts": 0}
    r: dict = {}
    moved = False
    while time.monotonic() - t0 < FAILOVER_DEADLINE_S:
        out["attempts"] += 1
        offset = log_size(net, src_dom)
        t1 = time.monotonic()
        r = net.key_pair(master, slave, 1)
        took = time.monotonic() - t1
        chains = logged_chains(net, src_dom, offset, slave)   # the chain of this request, if logged
        via = chains[-1][1] if chains else []
        msg = error_text(r) if r.get("error") else ""
        named = [x for x in [p.id for p in topology.pqc_links] + [s.id for s in topology.interworking]
                 if x != site and re.search(rf"\b{re.escape(x)}\b", msg)]
        if r.get("ok"):   # the stopped KME carries nothing: a delivered key went another way
            moved, out["outcome"] = True, "rerouted"
        elif alt != "site" and took < AT_ONCE_S and (named or (chains and site not in via) or (
                alt == "none" and re.search(r"no.?route|no.?chain", msg, re.I))):
            moved, out["outcome"] = True, "refused"
        if moved:
            out.update(took_s=round(took, 3), chain_after=named or via or [
                seg["crossing"] for seg in chain_of(net, since, master, slave) if seg.get("crossing")])
            break
        time.sleep(0.5)
    out.update(reroute_s=round(time.monotonic() - t0, 3), keys_matched=r.get("keys_matched", 0),
               path_after=r.get("path", []), security_level=(r.get("extension") or {}).get("qusec_security_level", ""),
               **({"error": error_text(r)} if r.get("error") else {}))
    chain = chain_of(net, since, master, slave) if out["outcome"] == "rerouted" else []
    out["chain"] = chain
    if alt == "site":
        check(f"{master} -> {slave} after {node} stopped: delivered through another interworking site",
              out["outcome"] == "rerouted", f"{chain_text(chain)} ({out['reroute_s']:.1f} s after the failure)"
              if moved else out.get("error", "no reroute in time"))
    else:
        what = {"pqc": f"the parent's chain moved off {site} to the PQC link",
                "none": "refused at once with the reason"}[alt]
        detail = (f"{out['outcome']}: chain via {', '.join(out.get('chain_after') or []) or '?'}"
                  + (f", security level {out['security_level']}" if out["outcome"] == "rerouted" else
                     f", {out.get('error', '')} in {out.get('took_s', 0):.2f} s")
                  + f" ({out['reroute_s']:.1f} s after the failure, {out['attempts']} request(s))"
                  if moved else out.get("error", "") or "the chain did not move in time")
        check(f"{master} -> {slave} after {node} stopped: {what}", moved
              and (out["outcome"] == "refused" or alt != "pqc" or out["security_level"] == "pqc"), detail)
    for other in others:   # a failure stays local: a key that does not cross the failed site flows
        if site in other["crossings"] or not other["crossings"]:
            continue
        r2 = net.key_pair(other["src_sae"], other["dst_sae"], keys)
        check(f"{other['src_sae']} -> {other['dst_sae']} (crossing {', '.join(other['crossings'])}) still gets "
              f"keys with {site} down", r2.get("ok", False),
              error_text(r2) if r2.get("error") else f"{r2.get('keys_matched', 0)}/{keys} match")
        out.setdefault("unaffected", []).append({"src_sae": other["src_sae"], "dst_sae": other["dst_sae"],
                                                 "keys_matched": r2.get("keys_matched", 0)})
    return failure, out


def summary(result: dict) -> str:
    checks = result.get("checks", [])
    passed = sum(1 for c in checks if c["ok"])
    lines = [f"{'DEMO OK' if result.get('ok') else 'DEMO FAILED'}: {passed}/{len(checks)} checks held"]
    for p in result.get("pairs", []):
        lines.append(f"  {p['src_sae']} ({p['src_domain']}) -> {p['dst_sae']} ({p['dst_domain']}): "
                     f"{p['keys_matched']}/{p['keys_requested']} keys over sites {', '.join(p['crossings']) or '-'}")
    rr, f = result.get("reroute"), result.get("failure")
    if rr and f:
        lines.append(f"  {f['node']} ({f['site']}) down: {rr.get('outcome') or 'no change'}"
                     + (f" via {', '.join(rr.get('chain_after') or [])}" if rr.get("chain_after") else "")
                     + (f" ({rr['error']})" if rr.get("error") else "")
                     + f", {rr['reroute_s']:.1f} s after the failure")
    return "\n".join(lines + closing_lines(result))


def network(topology: Topology, state_dir: Path, local: bool, progress: Any) -> Any:
    if local:
        from mininet_topos.launch.domains import MultiDomainNetwork
        return MultiDomainNetwork(topology, state_dir, progress=progress)
    from mininet_topos.launch.mininet_domains import MininetDomains
    return MininetDomains(topology, state_dir, progress=progress)


def run_demo(net: Any, topology: Topology, pairs: list, keys: int, say: Callable[[str], None]) -> dict:
    """Start ``net``, run the scenario, stop it; the result (``ok`` = every check held)."""
    import logging
    started = False
    try:
        say(f"\n{STEPS[0]}")
        t = time.monotonic()
        net.start()
        net.wait_exported(60)
        bringup = round(time.monotonic() - t, 3)
        started = True
        result = scenario(net, topology, pairs, keys, say)
        result["bringup_s"] = bringup
    except Exception as exc:  # noqa: BLE001 - the demo reports any failure as a failed check
        logging.getLogger(__name__).warning("demo step failed", exc_info=True)
        result = {"topology": topology.name, "mode": net.mode, "pairs": [], "ok": False,
                  "error": f"{type(exc).__name__}: {exc}", "started": started}
        say(f"\nFAILED: {result['error']}")
    finally:
        say(f"\n{STEPS[3]}")
        net.stop()
        say("  stopped: agents, every domain's network and QuSeC, the parent")
    return result
