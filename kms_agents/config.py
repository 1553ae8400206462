"""Agent configuration (TOML): the one place for a vKMS agent's settings, with documented defaults.

``load_config(path)`` reads and checks a file (every problem in one :class:`ConfigError`,
each "FILE: ENTRY: what is wrong"); ``write_config`` writes one back (the launchers'
provisioning, ``mininet_topos.provision.agents``, makes them from topology files). The
reference is docs/agent.md.
"""
from __future__ import annotations

import difflib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kms_agents.qkd_module import DEFAULT_CAPACITY_BYTES

DEFAULT_LISTEN = "127.0.0.1:0"
TOP_LEVEL = ("node_id", "state_dir", "trust", "tls", "listen", "qusec", "limits", "caps", "relay", "links",
             "peers", "saes", "graph", "etsi020", "pqc")


class ConfigError(Exception):
    """An agent config could not be loaded; ``problems`` lists "FILE: ENTRY: what is wrong"."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class TlsConfig:
    ca_cert: str
    cert: str      # this node's certificate (urn:qusec:node:NODE_ID); server and client
    key: str


@dataclass
class Limits:
    """ETSI 014 limits this agent announces in Get status (sizes in bits)."""
    key_size: int = 256
    min_key_size: int = 64
    max_key_size: int = 8192
    max_key_per_request: int = 128
    max_sae_id_count: int = 8        # additional slave SAEs per request (0 = no multicast)
    max_key_count: int = 100_000     # per SAE pair; stored_key_count never exceeds it


@dataclass
class Caps:
    """What one caller may hold of the agent's servers, and their deadlines; every number positive."""
    etsi014_connections: int = 256          # open ETSI 014 connections, all SAEs together
    etsi014_connections_per_sae: int = 64   # open ETSI 014 connections of one SAE
    etsi014_request_s: float = 10.0         # a request must arrive whole within this of its first byte
                                            # (and its answer be taken within this)
    etsi014_handshake_s: float = 10.0       # the TLS handshake of a new connection
    etsi014_idle_s: float = 60.0            # a keep-alive connection waits this long for a request
    etsi004_streams_per_sae: int = 64       # key streams opened by one SAE and not ended yet
    etsi004_calls_per_sae: int = 8          # ETSI 004 calls of one SAE in progress at once
    etsi004_join_s: float = 120.0           # a stream the other application has not joined ends after this
    etsi004_idle_s: float = 900.0           # a stream without any call for this long ends


@dataclass
class RelayConfig:
    """Key relay and the QuSeC control stream (docs/relay.md); every number must be positive."""
    hop_timeout_s: float = 10.0      # deadline of each hop's call (and of the chain behind it)
    max_parallel: int = 8            # keys/messages relayed concurrently by one source
    report_interval_s: float = 2.0   # link report period until QuSeC sets its own
    path_deadline_s: float = 10.0    # RequestPath deadline
    backoff_max_s: float = 5.0       # longest reconnect back-off
    data_ip: str = ""                # IPv4 on the OpenFlow network (default: the relay host)
    advertise_addr: str = ""         # relay address QuSeC gives neighbours (default: the bound one)
    prerelay: bool = False           # pre-relayed key buffers
    prerelay_max_keys: int = 64      # largest buffer per SAE pair


@dataclass
class LinkConfig:
    """One QKD link end and its link KMS."""
    id: str
    peer: str
    rate_bps: float
    kind: str = "simulated"                   # "simulated" | "etsi014"
    secret_file: str = ""                     # simulated: JSON {"secret": hex, "epoch": t}
    epoch: float = 0.0                        # simulated: start of key production (Unix time)
    capacity_bytes: int = DEFAULT_CAPACITY_BYTES
    kms_url: str = ""                         # etsi014: this end's vendor KMS base URL
    kms_sae_id: str = ""                      # etsi014: our SAE ID there (default: node id)
    kms_peer_sae_id: str = ""                 # etsi014: the far end's SAE ID (default: peer node id)
    kms_ca_cert: str = ""                     # etsi014: defaults to [tls]
    kms_cert: str = ""
    kms_key: str = ""


@dataclass
class PeerConfig:
    """How to reach a neighbour's agent (its relay/peer gRPC server)."""
    node: str
    relay_addr: str = ""      # host:port; or, when empty:
    agent_json: str = ""      # the neighbour's agent.json (read when first needed)


@dataclass
class Etsi020Peer:
    """A KME this agent speaks ETSI GS QKD 020 with (typically the vKMS of another network)."""
    kme_id: str
    url: str                 # https://host:port of its GS QKD 020 API
    identity: str            # what its certificate must name: urn:qusec:node:NAME, uri:URI, dns:NAME or cn:NAME
    ca_cert: str = ""        # the CA of its network (default: [etsi020] ca_certs)


ETSI020_IDENTITY_KINDS = ("urn:qusec:node:", "uri:", "dns:", "cn:")


@dataclass
class Etsi020Config:
    """The ETSI GS QKD 020 server and client (docs/etsi020.md); every number must be positive."""
    listen: str = DEFAULT_LISTEN
    ca_certs: list[str] = field(default_factory=list)   # CAs trusted for 020 peers (default: [tls] ca_cert)
    kme_id: str = ""                 # our KME ID as peers know it (default: node_id)
    callback_url: str = ""           # where peers POST acks (default: https://ADVERTISED/kmapi/v1/ext_keys/ack)
    sync_mode: bool = True           # serve the optional synchronous mode (advertised as a capability)
    handoff_sync: bool = True        # a site hands relayed keys on in the synchronous mode (both KMEs
                                     # ours); false: the asynchronous mode, acks at our callback
    max_body_bytes: int = 1 << 20
    max_keys_per_request: int = 1024
    max_key_bytes: int = 1024
    max_targets: int = 8
    max_pending_per_peer: int = 4096  # keys and callbacks one peer may have waiting on us
    request_s: float = 10.0          # a request must arrive whole within this (else 408)
    call_timeout_s: float = 10.0     # each call we make to a peer
    ack_timeout_s: float = 30.0      # a peer's acks for keys we sent must come within this
    max_attempts: int = 3            # ext_keys / ack deliveries before we void instead
    retry_s: float = 2.0             # back-off between attempts (doubling)
    retention_s: float = 86400.0     # how long settled key IDs (never material) are remembered
    peers: list[Etsi020Peer] = field(default_factory=list)


@dataclass
class PqcLinkPeer:
    """The other end of a post-quantum link into another domain (docs/interworking.md)."""
    id: str                  # the link's id (the topology's [[pqc_links]] id)
    peer: str                # its node id: its certificate must name urn:qusec:node:PEER
    addr: str                # host:port of its PQC link server
    ca_cert: str             # the CA of its domain, trusted for this link only


@dataclass
class PqcConfig:
    """This node's end of post-quantum links to other domains' KMEs: ML-KEM-768, no QKD key."""
    listen: str = DEFAULT_LISTEN
    max_pending_per_peer: int = 64   # agreed ML-KEM secrets one peer may have waiting here
    pending_s: float = 30.0          # an agreed secret not used within this is dropped
    call_timeout_s: float = 10.0     # each call we make to a peer
    links: list[PqcLinkPeer] = field(default_factory=list)


@dataclass
class AgentConfig:
    node_id: str
    state_dir: str
    tls: TlsConfig
    listen_etsi014: str = DEFAULT_LISTEN
    listen_etsi004: str = DEFAULT_LISTEN
    listen_relay: str = DEFAULT_LISTEN
    listen_metrics: str = DEFAULT_LISTEN      # plain HTTP /metrics (refusal counters)
    advertise_host: str = ""                  # host written in agent.json (default: listen host)
    qusec_addr: str = ""                      # QuSeC gRPC host:port (empty: standalone)
    trust: int = 3
    links: list[LinkConfig] = field(default_factory=list)
    peers: dict[str, PeerConfig] = field(default_factory=dict)
    saes: dict[str, str] = field(default_factory=dict)   # every SAE of the network -> its node
    graph: dict[str, list[str]] = field(default_factory=dict)  # QKD graph (node -> neighbours), optional
    limits: Limits = field(default_factory=Limits)
    caps: Caps = field(default_factory=Caps)
    relay: RelayConfig = field(default_factory=RelayConfig)
    etsi020: Etsi020Config | None = None      # None: no GS QKD 020 server
    pqc: PqcConfig | None = None              # None: no post-quantum link to another domain
    source: str = ""

    def local_saes(self) -> list[str]:
        return sorted(s for s, n in self.saes.items() if n == self.node_id)


def _check_addr(value: Any, where: str, problems: list[str]) -> str:
    if not isinstance(value, str) or ":" not in value:
        problems.append(f"{where}: expected \"host:port\", got {value!r}")
        return DEFAULT_LISTEN
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        problems.append(f"{where}: expected \"host:port\" with a port 0..65535, got {value!r}")
    return value


def _dataclass_from(cls, data: dict, where: str, problems: list[str], required: tuple[str, ...] = ()):
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for k, v in data.items():
        if k not in known:
            problems.append(f"{where}: unknown field {k!r} (known: {', '.join(sorted(known))})")
            continue
        default = known[k].default
        if isinstance(default, bool):
            if not isinstance(v, bool):
                problems.append(f"{where}: {k}: expected true or false, got {v!r}")
                continue
        elif isinstance(default, (int, float)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                problems.append(f"{where}: {k}: expected a number, got {v!r}")
                continue
            if isinstance(default, int) and not isinstance(v, int):
                problems.append(f"{where}: {k}: expected an integer, got {v!r}")
                continue
            if isinstance(default, float):
                v = float(v)
        elif isinstance(default, str) and not isinstance(v, str):
            problems.append(f"{where}: {k}: expected a string, got {v!r}")
            continue
        kwargs[k] = v
    for r in required:
        if r not in data:
            problems.append(f"{where}: missing required field {r!r}")
    if any(r not in kwargs for r in required):
        return None
    return cls(**kwargs)


def _positive_section(cls, data: dict, name: str, source: str, problems: list[str]):
    """A section whose numbers must all be positive ([caps], [relay]); the defaults if absent."""
    section = data.get(name, {})
    if not isinstance(section, dict):
        problems.append(f"{source}: [{name}]: expected a table")
        section = {}
    out = _dataclass_from(cls, section, f"{source}: [{name}]", problems) or cls()
    for f in fields(cls):
        value = getattr(out, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            problems.append(f"{source}: [{name}]: {f.name}: must be positive, got {value}")
    return out


def _parse_etsi020(data: Any, source: str, p: list[str]) -> Etsi020Config | None:
    where = f"{source}: [etsi020]"
    if not isinstance(data, dict):
        p.append(f"{where}: expected a table")
        return None
    plain = {k: v for k, v in data.items() if k not in ("peers", "ca_certs")}
    cfg = _dataclass_from(Etsi020Config, plain, where, p) or Etsi020Config()
    for f in fields(Etsi020Config):
        value = getattr(cfg, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            p.append(f"{where}: {f.name}: must be positive, got {value}")
    cfg.listen = _check_addr(cfg.listen, f"{where}: listen", p)
    if cfg.callback_url and not cfg.callback_url.startswith("https://"):
        p.append(f"{where}: callback_url: an https:// URL is required")
    cas = data.get("ca_certs", [])
    if not isinstance(cas, list) or not all(isinstance(c, str) for c in cas):
        p.append(f"{where}: ca_certs: expected a list of file paths")
        cas = []
    for c in cas:
        if not Path(c).is_file():
            p.append(f"{where}: ca_certs: file not found: {c}")
    cfg.ca_certs = list(cas)
    peers_in = data.get("peers", [])
    if not isinstance(peers_in, list):
        p.append(f"{where}: peers: expected [[etsi020.peers]] tables")
        peers_in = []
    for i, pd in enumerate(peers_in):
        pw = f"{where}: peers[{i}] ({pd.get('kme_id', '?') if isinstance(pd, dict) else '?'})"
        if not isinstance(pd, dict):
            p.append(f"{pw}: expected a table")
            continue
        peer = _dataclass_from(Etsi020Peer, pd, pw, p, ("kme_id", "url", "identity"))
        if peer is None:
            continue
        if not peer.url.startswith("https://"):
            p.append(f"{pw}: url: an https:// URL is required")
        kind = next((k for k in ETSI020_IDENTITY_KINDS if peer.identity.startswith(k)), None)
        if kind is None or len(peer.identity) == len(kind):
            p.append(f"{pw}: identity: expected urn:qusec:node:NAME, uri:URI, dns:NAME or cn:NAME, "
                     f"got {peer.identity!r}")
        if peer.ca_cert and not Path(peer.ca_cert).is_file():
            p.append(f"{pw}: ca_cert: file not found: {peer.ca_cert}")
        cfg.peers.append(peer)
    ids = [peer.kme_id for peer in cfg.peers]
    for dup in sorted({k for k in ids if ids.count(k) > 1}):
        p.append(f"{where}: peers: kme_id {dup!r} appears twice")
    return cfg


def _parse_pqc(data: Any, source: str, p: list[str]) -> PqcConfig | None:
    where = f"{source}: [pqc]"
    if not isinstance(data, dict):
        p.append(f"{where}: expected a table")
        return None
    cfg = _dataclass_from(PqcConfig, {k: v for k, v in data.items() if k != "links"}, where, p) \
        or PqcConfig()
    for f in fields(PqcConfig):
        value = getattr(cfg, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            p.append(f"{where}: {f.name}: must be positive, got {value}")
    cfg.listen = _check_addr(cfg.listen, f"{where}: listen", p)
    links_in = data.get("links", [])
    if not isinstance(links_in, list) or not links_in:
        p.append(f"{where}: links: expected [[pqc.links]] tables")
        links_in = []
    for i, ld in enumerate(links_in):
        lw = f"{where}: links[{i}] ({ld.get('id', '?') if isinstance(ld, dict) else '?'})"
        if not isinstance(ld, dict):
            p.append(f"{lw}: expected a table")
            continue
        link = _dataclass_from(PqcLinkPeer, ld, lw, p, ("id", "peer", "addr", "ca_cert"))
        if link is None:
            continue
        link.addr = _check_addr(link.addr, f"{lw}: addr", p)
        if not Path(link.ca_cert).is_file():
            p.append(f"{lw}: ca_cert: file not found: {link.ca_cert}")
        cfg.links.append(link)
    ids = [link.id for link in cfg.links]
    for dup in sorted({k for k in ids if ids.count(k) > 1}):
        p.append(f"{where}: links: id {dup!r} appears twice")
    return cfg


def _unknown_top_level(key: str, value: Any, source: str) -> str:
    # a typo such as [limts] must not silently leave the defaults in force
    tables = isinstance(value, dict) or (isinstance(value, list) and bool(value)
                                         and all(isinstance(v, dict) for v in value))
    close = difflib.get_close_matches(key, TOP_LEVEL, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"{source}: top level: unknown {'table' if tables else 'key'} {key!r}{hint}; "
            f"known: {', '.join(sorted(TOP_LEVEL))}")


def parse_config(data: dict, source: str = "<config>") -> AgentConfig:
    """Build an AgentConfig from parsed TOML; raises ConfigError listing every problem."""
    p: list[str] = []
    node_id = data.get("node_id")
    if not isinstance(node_id, str) or not node_id:
        p.append(f"{source}: node_id: required, a non-empty string")
    state_dir = data.get("state_dir")
    if not isinstance(state_dir, str) or not state_dir:
        p.append(f"{source}: state_dir: required, a directory path")
    tls_data = data.get("tls")
    tls = None
    if not isinstance(tls_data, dict):
        p.append(f"{source}: [tls]: required section with ca_cert, cert, key")
    else:
        tls = _dataclass_from(TlsConfig, tls_data, f"{source}: [tls]", p, ("ca_cert", "cert", "key"))
        if tls:
            for name in ("ca_cert", "cert", "key"):
                if not Path(getattr(tls, name)).is_file():
                    p.append(f"{source}: [tls]: {name}: file not found: {getattr(tls, name)}")
    listen = data.get("listen", {})
    if not isinstance(listen, dict):
        p.append(f"{source}: [listen]: expected a table")
        listen = {}
    for k in listen:
        if k not in ("etsi014", "etsi004", "relay", "metrics", "advertise_host"):
            p.append(f"{source}: [listen]: unknown field {k!r} (known: etsi014, etsi004, relay, metrics, "
                     "advertise_host)")
    addrs = {k: _check_addr(listen.get(k, DEFAULT_LISTEN), f"{source}: [listen]: {k}", p)
             for k in ("etsi014", "etsi004", "relay", "metrics")}
    qusec = data.get("qusec", {})
    qusec_addr = ""
    if isinstance(qusec, dict) and qusec.get("addr"):
        qusec_addr = _check_addr(qusec["addr"], f"{source}: [qusec]: addr", p)
    limits = _dataclass_from(Limits, data.get("limits", {}), f"{source}: [limits]", p) or Limits()
    if limits.key_size % 8 or limits.min_key_size % 8 or limits.max_key_size % 8:
        p.append(f"{source}: [limits]: key sizes must be multiples of 8 bits")
    if not 0 < limits.min_key_size <= limits.key_size <= limits.max_key_size:
        p.append(f"{source}: [limits]: need 0 < min_key_size <= key_size <= max_key_size")
    caps = _positive_section(Caps, data, "caps", source, p)
    relay = _positive_section(RelayConfig, data, "relay", source, p)
    links = []
    for i, ld in enumerate(data.get("links", [])):
        where = f"{source}: links[{i}] ({ld.get('id', '?') if isinstance(ld, dict) else '?'})"
        if not isinstance(ld, dict):
            p.append(f"{where}: expected a table")
            continue
        link = _dataclass_from(LinkConfig, ld, where, p, ("id", "peer", "rate_bps"))
        if link is None:
            continue
        if link.kind not in ("simulated", "etsi014"):
            p.append(f"{where}: kind: expected \"simulated\" or \"etsi014\", got {link.kind!r}")
        elif link.kind == "simulated" and not Path(link.secret_file).is_file():
            p.append(f"{where}: secret_file: file not found: {link.secret_file!r}")
        elif link.kind == "etsi014" and not link.kms_url.startswith("https://"):
            p.append(f"{where}: kms_url: an https:// URL is required for kind etsi014")
        if isinstance(link.rate_bps, bool) or not isinstance(link.rate_bps, (int, float)):
            p.append(f"{where}: rate_bps: expected a number, got {link.rate_bps!r}")
        elif link.rate_bps <= 0:
            p.append(f"{where}: rate_bps: must be positive, got {link.rate_bps}")
        links.append(link)
    if len({lk.id for lk in links}) != len(links):
        p.append(f"{source}: links: duplicate link id")
    peers = {}
    for name, pd in data.get("peers", {}).items():
        pc = _dataclass_from(PeerConfig, {"node": name, **pd} if isinstance(pd, dict) else {"node": name},
                             f"{source}: [peers.{name}]", p)
        if pc:
            peers[name] = pc
    saes = data.get("saes", {})
    if not isinstance(saes, dict) or not all(isinstance(v, str) for v in saes.values()):
        p.append(f"{source}: [saes]: expected SAE_ID = \"node id\" entries")
        saes = {}
    graph = data.get("graph", {})
    if not isinstance(graph, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                              for v in graph.values()):
        p.append(f"{source}: [graph]: expected NODE = [\"neighbour\", ...] entries")
        graph = {}
    etsi020 = _parse_etsi020(data["etsi020"], source, p) if "etsi020" in data else None
    pqc = _parse_pqc(data["pqc"], source, p) if "pqc" in data else None
    for k, v in data.items():
        if k not in TOP_LEVEL:
            p.append(_unknown_top_level(k, v, source))
    if p:
        raise ConfigError(p)
    return AgentConfig(node_id=node_id, state_dir=state_dir, tls=tls, listen_etsi014=addrs["etsi014"],
                       listen_etsi004=addrs["etsi004"], listen_relay=addrs["relay"],
                       listen_metrics=addrs["metrics"],
                       advertise_host=listen.get("advertise_host", ""), qusec_addr=qusec_addr,
                       trust=int(data.get("trust", 3)), links=links, peers=peers, saes=dict(saes),
                       graph={k: list(v) for k, v in graph.items()},
                       limits=limits, caps=caps, relay=relay, etsi020=etsi020, pqc=pqc,
                       source=source)


def load_config(path: str | Path) -> AgentConfig:
    """Read and check an agent config file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    return parse_config(data, str(path))


# -- writing ------------------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_table(name: str, d: dict) -> list[str]:
    out = [f"\n[{name}]"]
    for k, v in d.items():
        if v is None or v == "":
            continue
        out.append(f"{json.dumps(k)} = {_toml_value(v)}")
    return out


def to_toml(cfg: AgentConfig) -> str:
    lines = [f"# vKMS agent config for node {cfg.node_id} (reference: docs/agent.md)",
             f"node_id = {json.dumps(cfg.node_id)}", f"state_dir = {json.dumps(cfg.state_dir)}",
             f"trust = {cfg.trust}"]
    lines += _toml_table("tls", asdict(cfg.tls))
    lines += _toml_table("listen", {"etsi014": cfg.listen_etsi014, "etsi004": cfg.listen_etsi004,
                                    "relay": cfg.listen_relay, "metrics": cfg.listen_metrics,
                                    "advertise_host": cfg.advertise_host})
    if cfg.qusec_addr:
        lines += _toml_table("qusec", {"addr": cfg.qusec_addr})
    lines += _toml_table("limits", asdict(cfg.limits))
    lines += _toml_table("caps", asdict(cfg.caps))
    lines += _toml_table("relay", asdict(cfg.relay))
    lines += _toml_table("saes", cfg.saes)
    if cfg.graph:
        lines += _toml_table("graph", cfg.graph)
    for name, peer in cfg.peers.items():
        lines += _toml_table(f"peers.{json.dumps(name)}",
                             {k: v for k, v in asdict(peer).items() if k != "node"})
    for link in cfg.links:
        lines += ["\n[[links]]"] + _toml_table("x", asdict(link))[1:]
    if cfg.etsi020 is not None:
        lines += _toml_table("etsi020", {k: v for k, v in asdict(cfg.etsi020).items() if k != "peers"})
        for peer in cfg.etsi020.peers:
            lines += ["\n[[etsi020.peers]]"] + _toml_table("x", asdict(peer))[1:]
    if cfg.pqc is not None:
        lines += _toml_table("pqc", {k: v for k, v in asdict(cfg.pqc).items() if k != "links"})
        for link in cfg.pqc.links:
            lines += ["\n[[pqc.links]]"] + _toml_table("x", asdict(link))[1:]
    return "\n".join(lines) + "\n"


def write_config(cfg: AgentConfig, path: str | Path) -> Path:
    """Write ``cfg`` as TOML (mode 0600: it names key files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(to_toml(cfg))
    return path
