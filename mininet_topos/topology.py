"""Load and validate QKD topology files (TOML) into the typed model of ``mininet_topos.model``.

``load(spec)`` accepts a file path, the name of a shipped topology (a file in
``mininet_topos/topologies/``) or ``mesh:N[:SEED]`` (a synthetic mesh).  Every
problem found is collected and raised together in one ``TopologyError`` whose
``problems`` are strings ``"FILE: ENTRY: what is wrong"``.  The format is
documented in docs/topologies.md.
"""
from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import networkx as nx

from mininet_topos import keyrate
from mininet_topos.model import (KMS_KINDS, ClassicalLink, Domain, Interworking, Node, PqcLink, QkdLink, Sae,
                                 Topology)

SHIPPED_DIR = Path(__file__).resolve().parent / "topologies"
DEFAULT_TOPOLOGY = "metro8"
ROLES = ("trusted", "end")
TRUST_LEVELS = range(1, 6)
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
SUGGEST_LIMIT = 2000     # suggest close node names only in files up to this many nodes
LINK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:#-]*$")
# Names the network's own certificates use (QuSeC's DNS name, the switches): a node or SAE
# called so would hold a certificate passing for that party.
RESERVED_IDS = ("qusec", "ovs")

TOP_KEYS = ("network", "domains", "nodes", "links", "saes", "classical_links", "interworking", "pqc_links")
NETWORK_KEYS = ("name", "description", "source")
DOMAIN_KEYS = ("id", "description")
NODE_KEYS = ("id", "trust", "location", "role", "domain")
INTERWORKING_KEYS = ("id", "kmes")
PQC_LINK_KEYS = ("id", "a", "b")
LINK_KEYS = ("id", "a", "b", "length_km", "rate_bps", "kms", "kms_url")
SAE_KEYS = ("id", "node")
CLASSICAL_KEYS = ("a", "b", "latency_ms")


class TopologyError(Exception):
    """A topology could not be loaded; ``problems`` lists every "FILE: ENTRY: problem"."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def shipped() -> dict[str, Path]:
    """Shipped topology names (file stems) and their paths."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.toml"))}


def load(spec: str | Path) -> Topology:
    """Load a topology from a path, a shipped name, or ``mesh:N[:SEED]``."""
    text_spec = str(spec)
    if text_spec.startswith("mesh:"):
        return _load_mesh(text_spec)
    path = Path(spec)
    if not path.is_file():
        found = shipped().get(text_spec)
        if found is None:
            names = ", ".join(shipped()) or "none"
            raise TopologyError([
                f"{text_spec}: topology: not a file, a shipped topology ({names}) "
                f"or mesh:N[:SEED]"])
        path = found
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError([f"{path}: file: cannot read: {exc}"]) from exc
    return loads(text, str(path), path=path)


def loads(text: str, source: str = "<string>", *, path: Path | None = None) -> Topology:
    """Parse and validate topology TOML ``text``; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError([f"{source}: {_toml_where(exc)}: TOML syntax error: {_toml_msg(exc)}"]) from exc
    default_name = path.stem if path else "topology"
    return parse(data, source, path=path, default_name=default_name)


def _toml_where(exc: tomllib.TOMLDecodeError) -> str:
    m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
    if m:
        return f"line {m.group(1)}"
    return "end of file" if "end of document" in str(exc) else "syntax"


def _toml_msg(exc: tomllib.TOMLDecodeError) -> str:
    return re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))


def _load_mesh(spec: str) -> Topology:
    parts = spec.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        n = int(parts[1])
        seed = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise TopologyError([f"{spec}: topology: expected mesh:N or mesh:N:SEED with integers"]) from None
    from mininet_topos import synthetic
    try:
        return synthetic.mesh(n, seed)
    except ValueError as exc:
        raise TopologyError([f"{spec}: topology: {exc}"]) from None


class _Checker:
    """Collects problems while reading one file's data."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []

    def add(self, entry: str, problem: str) -> None:
        self.problems.append(f"{self.source}: {entry}: {problem}")

    def unknown_keys(self, entry: str, table: dict, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.add(entry, f"{key}: unknown key{hint}; allowed: {', '.join(allowed)}")

    def string(self, entry: str, table: dict, key: str, *, required: bool,
               pattern: re.Pattern | None = None) -> str | None:
        if key not in table:
            if required:
                self.add(entry, f"{key}: missing (required)")
            return None
        value = table[key]
        if not isinstance(value, str):
            self.add(entry, f"{key}: must be a string, got {_type_name(value)} {value!r}")
            return None
        if pattern is not None and not pattern.match(value):
            self.add(entry, f"{key}: {value!r} is not a valid id (letters, digits, _ . : - ; "
                            f"starting with a letter or digit)")
            return None
        return value

    def number(self, entry: str, table: dict, key: str) -> float | None:
        if key not in table:
            return None
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(entry, f"{key}: must be a number, got {_type_name(value)} {value!r}")
            return None
        if not math.isfinite(value):
            self.add(entry, f"{key}: must be finite, got {value}")
            return None
        return float(value)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string",
            list: "array", dict: "table"}.get(type(value), type(value).__name__)


def _entry_list(chk: _Checker, data: dict, key: str) -> list[tuple[int, dict]]:
    """The ``[[key]]`` entries (1-based index) that are tables; reports the rest."""
    if key not in data:
        return []
    value = data[key]
    if not isinstance(value, list):
        chk.add(key, f"must be an array of tables ([[{key}]]), got {_type_name(value)}")
        return []
    out = []
    for i, item in enumerate(value, 1):
        if isinstance(item, dict):
            out.append((i, item))
        else:
            chk.add(f"{key} {i}", f"must be a table, got {_type_name(item)} {item!r}")
    return out


def _label(kind: str, index: int, item: dict, key: str = "id") -> str:
    ident = item.get(key)
    return f"{kind} {index} ({ident})" if isinstance(ident, str) else f"{kind} {index}"


def parse(data: dict, source: str, *, path: Path | None = None,
          default_name: str = "topology") -> Topology:
    """Validate parsed TOML ``data`` and build the Topology, or raise TopologyError."""
    chk = _Checker(source)
    chk.unknown_keys("file", data, TOP_KEYS)

    name, description, src = default_name, "", ""
    network = data.get("network", {})
    if not isinstance(network, dict):
        chk.add("[network]", f"must be a table, got {_type_name(network)}")
        network = {}
    chk.unknown_keys("[network]", network, NETWORK_KEYS)
    name = chk.string("[network]", network, "name", required=False) or name
    description = chk.string("[network]", network, "description", required=False) or ""
    src = chk.string("[network]", network, "source", required=False) or ""

    domains = _parse_domains(chk, data)
    nodes = _parse_nodes(chk, data, domains)
    links = _parse_links(chk, data, nodes)
    saes = _parse_saes(chk, data, nodes)
    sites = _parse_interworking(chk, data, nodes, domains)
    pqc = _parse_pqc_links(chk, data, nodes, domains, {lk.id for lk in links})
    classical = _parse_classical(chk, data, nodes, _crossings(sites, pqc))

    topo = Topology(name=name, nodes=nodes, links=links, saes=saes, classical=classical,
                    description=description, source=src, path=path, domains=domains,
                    interworking=sites, pqc_links=pqc)
    if nodes and not chk.problems:
        _check_graphs(chk, topo)
    if chk.problems:
        raise TopologyError(chk.problems)
    return topo


def _parse_domains(chk: _Checker, data: dict) -> dict[str, Domain]:
    domains: dict[str, Domain] = {}
    for i, item in _entry_list(chk, data, "domains"):
        entry = _label("domain", i, item)
        chk.unknown_keys(entry, item, DOMAIN_KEYS)
        dom_id = chk.string(entry, item, "id", required=True, pattern=ID_RE)
        description = chk.string(entry, item, "description", required=False) or ""
        if dom_id is None:
            continue
        if dom_id in domains:
            chk.add(entry, f"id: duplicate domain id {dom_id!r}")
            continue
        domains[dom_id] = Domain(id=dom_id, description=description)
    if "domains" in data and data["domains"] and len(domains) == 1 and not chk.problems:
        chk.add("domains", "one domain declared: a single network needs no [[domains]] (remove it), "
                           "several networks need two or more")
    return domains


def _node_domain(chk: _Checker, entry: str, item: dict, domains: dict[str, Domain]) -> str:
    """The node's ``domain``: required when the file declares [[domains]], refused otherwise."""
    if not domains:
        if "domain" in item:
            chk.add(entry, f"domain: {item['domain']!r} but the file declares no [[domains]]")
        return ""
    dom = chk.string(entry, item, "domain", required=True)
    if dom is not None and dom not in domains:
        chk.add(entry, f"domain: unknown domain {dom!r}{_suggest(dom, domains)}; "
                       f"declared: {', '.join(domains)}")
        return ""
    return dom or ""


def _parse_nodes(chk: _Checker, data: dict, domains: dict[str, Domain]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    entries = _entry_list(chk, data, "nodes")
    if "nodes" not in data or data["nodes"] == []:
        chk.add("nodes", "missing: a topology needs at least one [[nodes]] entry")
    for i, item in entries:
        entry = _label("node", i, item)
        chk.unknown_keys(entry, item, NODE_KEYS)
        node_id = chk.string(entry, item, "id", required=True, pattern=ID_RE)
        trust = item.get("trust", 3)
        if isinstance(trust, bool) or not isinstance(trust, int) or trust not in TRUST_LEVELS:
            chk.add(entry, f"trust: must be an integer 1..5, got {trust!r}")
            trust = 3
        location = None
        if "location" in item:
            loc = item["location"]
            if (isinstance(loc, list) and len(loc) == 2
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in loc)):
                location = (float(loc[0]), float(loc[1]))
            else:
                chk.add(entry, f"location: must be an array of two numbers [x, y], got {loc!r}")
        role = item.get("role", "trusted")
        if role not in ROLES:
            chk.add(entry, f"role: must be one of {', '.join(map(repr, ROLES))}, got {role!r}")
            role = "trusted"
        domain = _node_domain(chk, entry, item, domains)
        if node_id is None:
            continue
        if node_id in nodes:
            chk.add(entry, f"id: duplicate node id {node_id!r}")
            continue
        if node_id.lower() in RESERVED_IDS:
            chk.add(entry, f"id: {node_id!r} is reserved (the network's certificates use "
                           f"{', '.join(RESERVED_IDS)})")
            continue
        nodes[node_id] = Node(id=node_id, trust=trust, location=location, role=role, domain=domain)
    return nodes


def _endpoints(chk: _Checker, entry: str, item: dict, nodes: dict[str, Node]) -> tuple[str, str] | None:
    a = chk.string(entry, item, "a", required=True)
    b = chk.string(entry, item, "b", required=True)
    ok = a is not None and b is not None
    for key, end in (("a", a), ("b", b)):
        if end is not None and end not in nodes:
            chk.add(entry, f"{key}: unknown node {end!r}{_suggest(end, nodes)}")
            ok = False
    if a is not None and a == b:
        chk.add(entry, f"self-loop: both ends are {a!r}")
        ok = False
    return (a, b) if ok else None


def _suggest(name: str, nodes: dict) -> str:
    close = [n for n in nodes if n.lower() == name.lower()]
    if not close and len(nodes) <= SUGGEST_LIMIT:   # difflib is quadratic-ish: skip on huge files
        close = difflib.get_close_matches(name, list(nodes), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parse_links(chk: _Checker, data: dict, nodes: dict[str, Node]) -> list[QkdLink]:
    links: list[QkdLink] = []
    seen: set[str] = set()
    for i, item in _entry_list(chk, data, "links"):
        a0, b0 = item.get("a"), item.get("b")
        default_id = f"{a0}-{b0}" if isinstance(a0, str) and isinstance(b0, str) else None
        link_id = chk.string(f"link {i}", item, "id", required=False, pattern=LINK_ID_RE) \
            if "id" in item else default_id
        entry = f"link {i} ({link_id})" if link_id else f"link {i}"
        chk.unknown_keys(entry, item, LINK_KEYS)
        ends = _endpoints(chk, entry, item, nodes)
        length = chk.number(entry, item, "length_km")
        rate = chk.number(entry, item, "rate_bps")
        bad = False
        if length is not None and length <= 0:
            chk.add(entry, f"length_km: must be positive, got {item['length_km']}")
            bad = True
        if rate is not None and rate <= 0:
            chk.add(entry, f"rate_bps: must be positive, got {item['rate_bps']}")
            bad = True
        if "length_km" not in item and "rate_bps" not in item:
            chk.add(entry, "length_km/rate_bps: missing: give the fibre length, the secret key rate, or both")
            bad = True
        if not bad and length is not None:
            if rate is None:
                rate = keyrate.rate_from_length(length)
                if rate <= 0:
                    chk.add(entry, f"length_km: {length:g} km is beyond the key-rate model's reach "
                                   f"({keyrate.max_length_km():g} km); give an explicit rate_bps")
            else:
                bound = keyrate.plob_bound_bps(length)
                if rate > bound:
                    chk.add(entry, f"rate_bps: {rate:g} b/s is above the PLOB bound for {length:g} km "
                                   f"({bound:.4g} b/s at {keyrate.PULSE_RATE_HZ:g} pulses/s)")
        kms = item.get("kms", "simulated")
        if kms not in KMS_KINDS:
            chk.add(entry, f"kms: must be one of {', '.join(map(repr, KMS_KINDS))}, got {kms!r}")
        kms_url = chk.string(entry, item, "kms_url", required=False)
        if kms == "etsi014" and "kms_url" not in item:
            chk.add(entry, 'kms_url: missing (required when kms = "etsi014")')
        elif kms_url is not None and kms != "etsi014":
            chk.add(entry, 'kms_url: only applies to kms = "etsi014"')
        elif kms_url is not None and not kms_url.startswith("https://"):
            chk.add(entry, f"kms_url: must be an https:// URL (ETSI 014 requires TLS), got {kms_url!r}")
        if link_id is not None:
            if link_id in seen:
                hint = (f"; parallel links need distinct ids, e.g. id = \"{link_id}#2\""
                        if "id" not in item else "")
                chk.add(entry, f"id: duplicate link id {link_id!r}{hint}")
                continue
            seen.add(link_id)
        if ends is not None and _crosses(nodes, *ends):
            chk.add(entry, f"a, b: {ends[0]!r} is in domain {nodes[ends[0]].domain!r} and {ends[1]!r} in "
                           f"{nodes[ends[1]].domain!r}: a QKD link stays inside one domain; join domains "
                           f"through an [[interworking]] site or a [[pqc_links]] entry")
            bad = True
        if ends is None or link_id is None or rate is None or rate <= 0 or bad:
            continue
        links.append(QkdLink(id=link_id, a=ends[0], b=ends[1], rate_bps=rate, length_km=length,
                             kms=kms if kms in KMS_KINDS else "simulated", kms_url=kms_url))
    return links


def _parse_saes(chk: _Checker, data: dict, nodes: dict[str, Node]) -> dict[str, Sae]:
    saes: dict[str, Sae] = {}
    for i, item in _entry_list(chk, data, "saes"):
        entry = _label("sae", i, item)
        chk.unknown_keys(entry, item, SAE_KEYS)
        sae_id = chk.string(entry, item, "id", required=True, pattern=ID_RE)
        node = chk.string(entry, item, "node", required=True)
        if node is not None and node not in nodes:
            chk.add(entry, f"node: unknown node {node!r}{_suggest(node, nodes)}")
            node = None
        if sae_id is not None and sae_id in saes:
            chk.add(entry, f"id: duplicate SAE id {sae_id!r}")
            continue
        if sae_id is not None and sae_id in nodes:
            # one name, two identities: its certificates would pass for each other's
            chk.add(entry, f"id: {sae_id!r} is also a node id; SAE ids and node ids must differ")
            continue
        if sae_id is not None and sae_id.lower() in RESERVED_IDS:
            chk.add(entry, f"id: {sae_id!r} is reserved (the network's certificates use "
                           f"{', '.join(RESERVED_IDS)})")
            continue
        if sae_id is not None and node is not None:
            saes[sae_id] = Sae(id=sae_id, node=node)
    return saes


def _parse_interworking(chk: _Checker, data: dict, nodes: dict[str, Node],
                        domains: dict[str, Domain]) -> list[Interworking]:
    sites: list[Interworking] = []
    seen: set[str] = set()
    kme_site: dict[str, str] = {}
    for i, item in _entry_list(chk, data, "interworking"):
        entry = _label("interworking", i, item)
        chk.unknown_keys(entry, item, INTERWORKING_KEYS)
        site_id = chk.string(entry, item, "id", required=True, pattern=ID_RE)
        if not domains:
            chk.add(entry, "an interworking site joins domains: declare them in [[domains]] and give "
                           "each node its domain")
            continue
        kmes = item.get("kmes")
        if not (isinstance(kmes, list) and len(kmes) >= 2 and all(isinstance(k, str) for k in kmes)):
            chk.add(entry, f"kmes: must be an array of two or more node ids (one KME per network the "
                           f"site joins), got {kmes!r}")
            continue
        ok = True
        by_domain: dict[str, str] = {}
        for k in kmes:
            if k not in nodes:
                chk.add(entry, f"kmes: unknown node {k!r}{_suggest(k, nodes)}")
                ok = False
                continue
            if k in kme_site:
                chk.add(entry, f"kmes: {k!r} is already a KME of interworking site {kme_site[k]!r}")
                ok = False
            dom = nodes[k].domain
            if dom in by_domain:
                chk.add(entry, f"kmes: {by_domain[dom]!r} and {k!r} are both in domain {dom!r}: a site holds "
                               f"one KME per network it joins")
                ok = False
            by_domain[dom] = k
        if site_id is not None and (site_id in seen or site_id in nodes):
            what = "an interworking site" if site_id in seen else "a node id"
            chk.add(entry, f"id: {site_id!r} is already {what}")
            ok = False
        if not ok or site_id is None:
            continue
        seen.add(site_id)
        for k in kmes:
            kme_site[k] = site_id
        sites.append(Interworking(id=site_id, kmes=tuple(kmes)))
    return sites


def _parse_pqc_links(chk: _Checker, data: dict, nodes: dict[str, Node], domains: dict[str, Domain],
                     link_ids: set[str]) -> list[PqcLink]:
    out: list[PqcLink] = []
    seen = set(link_ids)
    for i, item in _entry_list(chk, data, "pqc_links"):
        a0, b0 = item.get("a"), item.get("b")
        default_id = f"{a0}-{b0}" if isinstance(a0, str) and isinstance(b0, str) else None
        link_id = chk.string(f"pqc link {i}", item, "id", required=False, pattern=LINK_ID_RE) \
            if "id" in item else default_id
        entry = f"pqc link {i} ({link_id})" if link_id else f"pqc link {i}"
        chk.unknown_keys(entry, item, PQC_LINK_KEYS)
        if not domains:
            chk.add(entry, "a post-quantum link joins two domains: declare them in [[domains]]")
            continue
        ends = _endpoints(chk, entry, item, nodes)
        if ends is None or link_id is None:
            continue
        if not all(nodes[e].domain for e in ends):
            continue   # a node without its domain: reported there
        if nodes[ends[0]].domain == nodes[ends[1]].domain:
            chk.add(entry, f"a, b: both ends are in domain {nodes[ends[0]].domain!r}: a post-quantum link "
                           f"joins two domains (inside one, use a QKD link)")
            continue
        if link_id in seen:
            chk.add(entry, f"id: duplicate link id {link_id!r}")
            continue
        seen.add(link_id)
        out.append(PqcLink(id=link_id, a=ends[0], b=ends[1]))
    return out


def _crosses(nodes: dict[str, Node], a: str, b: str) -> bool:
    """``a`` and ``b`` are in different (known) domains."""
    da, db = nodes[a].domain, nodes[b].domain
    return bool(da and db and da != db)


def _crossings(sites: list[Interworking], pqc: list[PqcLink]) -> set[frozenset[str]]:
    """Node pairs of different domains a classical link may join: KMEs of one site, PQC link ends."""
    pairs = {frozenset((x, y)) for s in sites for x in s.kmes for y in s.kmes if x != y}
    return pairs | {frozenset((p.a, p.b)) for p in pqc}


def _parse_classical(chk: _Checker, data: dict, nodes: dict[str, Node],
                     crossings: set[frozenset[str]]) -> list[ClassicalLink]:
    out: list[ClassicalLink] = []
    for i, item in _entry_list(chk, data, "classical_links"):
        a0, b0 = item.get("a"), item.get("b")
        entry = f"classical link {i} ({a0}-{b0})" if isinstance(a0, str) and isinstance(b0, str) \
            else f"classical link {i}"
        chk.unknown_keys(entry, item, CLASSICAL_KEYS)
        ends = _endpoints(chk, entry, item, nodes)
        latency = chk.number(entry, item, "latency_ms")
        if latency is not None and latency < 0:
            chk.add(entry, f"latency_ms: must not be negative, got {item['latency_ms']}")
            continue
        if ends is not None and _crosses(nodes, *ends) and frozenset(ends) not in crossings:
            chk.add(entry, f"a, b: {ends[0]!r} ({nodes[ends[0]].domain}) and {ends[1]!r} "
                           f"({nodes[ends[1]].domain}) are in different domains; a classical link between "
                           f"domains joins the KMEs of one interworking site or the ends of a PQC link")
            continue
        if ends is not None:
            out.append(ClassicalLink(a=ends[0], b=ends[1], latency_ms=latency))
    return out


def _check_graphs(chk: _Checker, topo: Topology) -> None:
    """One network: its QKD graph connected. Several: each domain's, and the domains joined."""
    if not topo.multi_domain:
        _check_connected(chk, "graph", "QKD graph", topo.qkd_graph())
        if topo.classical:
            _check_connected(chk, "classical_links", "classical graph", topo.classical_graph())
        return
    empty = [d for d in topo.domains if not topo.domain_view(d).nodes]
    for dom in empty:
        chk.add(f"domain {dom}", "has no nodes")
    if empty:
        return
    for dom in topo.domains:
        view = topo.domain_view(dom)
        _check_connected(chk, f"domain {dom}", f"domain {dom}'s QKD graph", view.qkd_graph())
        if view.classical:
            _check_connected(chk, f"domain {dom}", f"domain {dom}'s classical graph", view.classical_graph())
    dg = topo.domain_graph()
    if dg.number_of_nodes() > 1 and not nx.is_connected(nx.Graph(dg)):
        _check_connected(chk, "domains", "domain graph (domains joined by [[interworking]] and [[pqc_links]])",
                         nx.Graph(dg))


def _check_connected(chk: _Checker, entry: str, what: str, graph: nx.Graph) -> None:
    if graph.number_of_nodes() == 0 or nx.is_connected(graph):
        return
    parts = sorted(nx.connected_components(graph), key=lambda c: (-len(c), min(c)))
    shown = "; ".join("{" + ", ".join(sorted(c)[:5]) + (", ..." if len(c) > 5 else "") + "}"
                      for c in parts[:4])
    more = f"; and {len(parts) - 4} more" if len(parts) > 4 else ""
    chk.add(entry, f"{what} is disconnected: {len(parts)} components: {shown}{more}")


def hops(topo: Topology, a: str, b: str) -> int:
    """Number of QKD hops on a shortest path between nodes ``a`` and ``b``."""
    return nx.shortest_path_length(topo.qkd_graph(), a, b)


def summary(topo: Topology) -> str:
    """One line: name and counts, as ``qkdnet check`` prints it."""
    text = f"{len(topo.nodes)} nodes, {len(topo.links)} links, {len(topo.saes)} SAEs"
    if topo.multi_domain:
        sites, pqc = len(topo.interworking), len(topo.pqc_links)
        text += (f"; {len(topo.domains)} domains, {sites} interworking site{'s' * (sites != 1)}, "
                 f"{pqc} PQC link{'s' * (pqc != 1)}")
    return text


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _toml_num(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def dumps(topo: Topology, *, rates: bool = True) -> str:
    """Write ``topo`` as topology TOML (``rates``: also write each link's rate_bps)."""
    out = ["[network]", f"name = {_toml_str(topo.name)}"]
    if topo.description:
        out.append(f"description = {_toml_str(topo.description)}")
    if topo.source:
        out.append(f"source = {_toml_str(topo.source)}")
    for d in topo.domains.values():
        out += ["", "[[domains]]", f"id = {_toml_str(d.id)}"]
        if d.description:
            out.append(f"description = {_toml_str(d.description)}")
    for n in topo.nodes.values():
        out += ["", "[[nodes]]", f"id = {_toml_str(n.id)}"]
        if n.domain:
            out.append(f"domain = {_toml_str(n.domain)}")
        if n.trust != 3:
            out.append(f"trust = {n.trust}")
        if n.location is not None:
            out.append(f"location = [{_toml_num(n.location[0])}, {_toml_num(n.location[1])}]")
        if n.role != "trusted":
            out.append(f"role = {_toml_str(n.role)}")
    for link in topo.links:
        out += ["", "[[links]]"]
        if link.id != f"{link.a}-{link.b}":
            out.append(f"id = {_toml_str(link.id)}")
        out += [f"a = {_toml_str(link.a)}", f"b = {_toml_str(link.b)}"]
        if link.length_km is not None:
            out.append(f"length_km = {_toml_num(link.length_km)}")
        if rates or link.length_km is None:
            out.append(f"rate_bps = {_toml_num(link.rate_bps)}")
        if link.kms != "simulated":
            out.append(f"kms = {_toml_str(link.kms)}")
        if link.kms_url:
            out.append(f"kms_url = {_toml_str(link.kms_url)}")
    for s in topo.saes.values():
        out += ["", "[[saes]]", f"id = {_toml_str(s.id)}", f"node = {_toml_str(s.node)}"]
    for site in topo.interworking:
        out += ["", "[[interworking]]", f"id = {_toml_str(site.id)}",
                "kmes = [" + ", ".join(map(_toml_str, site.kmes)) + "]"]
    for p in topo.pqc_links:
        out += ["", "[[pqc_links]]"]
        if p.id != f"{p.a}-{p.b}":
            out.append(f"id = {_toml_str(p.id)}")
        out += [f"a = {_toml_str(p.a)}", f"b = {_toml_str(p.b)}"]
    for c in topo.classical:
        out += ["", "[[classical_links]]", f"a = {_toml_str(c.a)}", f"b = {_toml_str(c.b)}"]
        if c.latency_ms is not None:
            out.append(f"latency_ms = {_toml_num(c.latency_ms)}")
    return "\n".join(out) + "\n"
