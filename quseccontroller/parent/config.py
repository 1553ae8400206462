"""The parent controller's configuration file (TOML):

    [listen]
    grpc = "127.0.0.1:0"            # host:port (port 0: any; parent.json names the bound one)

    [tls]                           # mutual TLS: domain QuSeCs present certificates of this CA
    ca_cert = "ca.pem"
    cert = "parent.pem"             # role controller: urn:qusec:controller:parent
    key = "parent.key"

    [export]
    interval_s = 2.0                # how often domains export; three missed: the domain is down

    [[domains]]                     # two or more
    id = "beijing"
    controller = "qusec-beijing"    # the domain QuSeC's certificate: urn:qusec:controller:NAME

Relative paths are relative to the file. Every problem is reported at once, naming the entry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from quseccontroller import tomlfile
from quseccontroller.tomlfile import FileProblems

TABLES = {"listen": ("grpc",), "tls": ("ca_cert", "cert", "key"), "export": ("interval_s",)}
DOMAIN_FIELDS = ("id", "controller")


class ParentConfigError(FileProblems):
    """A parent configuration that cannot be used."""


@dataclass(frozen=True)
class ParentConfig:
    grpc_listen: str
    ca_cert: str
    cert: str
    key: str
    interval_s: float
    controllers: dict[str, str]      # controller certificate name -> domain id


def _unknown(p: list[str], where: str, table: dict, known: tuple[str, ...]) -> None:
    for k in table:
        if k not in known:
            close = tomlfile.closest(k, known)
            hint = f" (did you mean {close!r}?)" if close else ""
            p.append(f"{where}: {k}: unknown field{hint}; known: {', '.join(known)}")


def load(path: str | Path) -> ParentConfig:
    path = Path(path)
    data = tomlfile.read(path, ParentConfigError)
    src = str(path)
    p: list[str] = []
    _unknown(p, src, data, tuple(TABLES) + ("domains",))
    tables = {}
    for name, fields in TABLES.items():
        t = data.get(name, {})
        if not isinstance(t, dict):
            p.append(f"{src}: [{name}]: must be a table")
            t = {}
        _unknown(p, f"{src}: [{name}]", t, fields)
        tables[name] = t
    listen = tables["listen"].get("grpc", "127.0.0.1:0")
    if not isinstance(listen, str) or ":" not in listen:
        p.append(f"{src}: [listen]: grpc: must be \"host:port\", got {listen!r}")
    files = {}
    for k in TABLES["tls"]:
        v = tables["tls"].get(k)
        if not isinstance(v, str) or not v:
            p.append(f"{src}: [tls]: {k}: missing (the parent serves mutual TLS only)")
            continue
        f = (path.parent / v) if not Path(v).is_absolute() else Path(v)
        if not f.is_file():
            p.append(f"{src}: [tls]: {k}: {f}: no such file")
        files[k] = str(f)
    interval = tables["export"].get("interval_s", 2.0)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not math.isfinite(interval) \
            or not 0.1 <= interval <= 3600:
        p.append(f"{src}: [export]: interval_s: must be a number of seconds in 0.1..3600, got {interval!r}")
        interval = 2.0
    controllers: dict[str, str] = {}
    domains = data.get("domains", [])
    if not isinstance(domains, list) or len(domains) < 2:
        p.append(f"{src}: domains: a parent needs two or more [[domains]] entries")
        domains = domains if isinstance(domains, list) else []
    seen: set[str] = set()
    for i, d in enumerate(domains, 1):
        where = f"{src}: domains[{i}]"
        if not isinstance(d, dict):
            p.append(f"{where}: must be a table")
            continue
        _unknown(p, where, d, DOMAIN_FIELDS)
        dom, ctl = d.get("id"), d.get("controller")
        if not isinstance(dom, str) or not dom:
            p.append(f"{where}: id: missing")
            continue
        where = f"{src}: domains[{i}] ({dom})"
        if not isinstance(ctl, str) or not ctl:
            p.append(f"{where}: controller: missing (the name in the domain QuSeC's certificate)")
            continue
        if dom in seen:
            p.append(f"{where}: id: duplicate domain")
        if ctl in controllers:
            p.append(f"{where}: controller: {ctl!r} already runs domain {controllers[ctl]!r}")
        seen.add(dom)
        controllers[ctl] = dom
    if p:
        raise ParentConfigError(p)
    return ParentConfig(grpc_listen=listen, ca_cert=files["ca_cert"], cert=files["cert"], key=files["key"],
                        interval_s=float(interval), controllers=controllers)
