"""What the parent knows: each domain's last export, how fresh it is, and whose certificate
speaks for which domain. Pure: the server passes ``now``."""
from __future__ import annotations

from dataclasses import dataclass

from quseccontroller.abstract import KINDS, DomainExport

STALE_INTERVALS = 3          # an export older than this many intervals: the domain is down
MAX_BORDERS = 1024           # per export
MAX_EXPORTED_SAES = 100_000  # per export


class ExportRefused(ValueError):
    """An export the parent does not take; ``reason`` is a fixed code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Entry:
    export: DomainExport
    received: float


class Directory:
    def __init__(self, controllers: dict[str, str], interval_s: float) -> None:
        """``controllers``: controller certificate name -> the domain it runs."""
        self.controllers = dict(controllers)
        self.interval_s = interval_s
        self.entries: dict[str, Entry] = {}

    def domain_of(self, controller: str) -> str | None:
        return self.controllers.get(controller)

    def update(self, export: DomainExport, now: float) -> None:
        """Take ``export`` (its ``domain`` already the caller's), or raise ExportRefused."""
        last = self.entries.get(export.domain)
        if last is not None and export.seq <= last.export.seq:
            raise ExportRefused("stale_seq", f"export seq {export.seq} is not after the last one "
                                             f"({last.export.seq}) of domain {export.domain!r}")
        if len(export.borders) > MAX_BORDERS or len(export.saes) > MAX_EXPORTED_SAES:
            raise ExportRefused("too_large", f"an export holds at most {MAX_BORDERS} borders and "
                                             f"{MAX_EXPORTED_SAES} SAEs")
        nodes = {b.node for b in export.borders}
        for b in export.borders:
            if b.kind not in KINDS:
                raise ExportRefused("invalid", f"border {b.node!r}: kind {b.kind!r} is not one of "
                                               f"{', '.join(KINDS)}")
            if b.peer_domain == export.domain or b.peer_domain not in self.controllers.values():
                raise ExportRefused("invalid", f"border {b.node!r}: peer domain {b.peer_domain!r} is not "
                                               f"another configured domain")
        for a, b in export.links:
            if a not in nodes or b not in nodes:
                raise ExportRefused("invalid", f"link {a}-{b}: both ends must be border nodes")
        for sae, per in export.saes.items():
            if not set(per) <= nodes:
                raise ExportRefused("invalid", f"SAE {sae!r}: reach from {sorted(set(per) - nodes)}, "
                                               f"which are not border nodes")
        self.entries[export.domain] = Entry(export, now)

    def fresh(self, now: float) -> dict[str, DomainExport]:
        limit = STALE_INTERVALS * self.interval_s
        return {d: e.export for d, e in self.entries.items() if now - e.received <= limit}
