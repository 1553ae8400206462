"""Readable tables of QuSeC's operator interface (``/status``, ``/events``): one formatter of
each, shared by ``qkdnet status|links|paths|events`` and the Mininet CLI (``qlinks``, ``qpaths``)."""
from __future__ import annotations

import time
from typing import Any

REFUSAL_KINDS = ("path_refused", "registration_refused", "policy_rejected")
# fields shown first in an event line, in this order (the rest follow sorted)
_LEAD = ("node", "src", "dst", "src_sae", "dst_sae", "paths", "nodes", "link", "reason", "rule",
         "result", "rules")


def clock(t: float | None) -> str:
    """Wall time as ``YYYY-MM-DD HH:MM:SS`` UTC (``-`` for none)."""
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def format_paths(status: dict) -> str:
    paths = status.get("core", {}).get("paths", {})
    if not paths:
        return "no active relay paths"
    return "\n".join(f"{pid}: {' -> '.join(p['nodes'])}  rule={p['rule']} share={p['share']} "
                     f"flows={p['flows']}" for pid, p in paths.items())


def format_links(status: dict) -> str:
    links = status.get("core", {}).get("links", {})
    if not links:
        out = ["no QKD links reported yet"]
    else:
        out = [f"{'link':<22} {'ends':<24} {'rate b/s':>12}  stored bits (per end)   status"]
        for lid, l in links.items():
            stored = ", ".join(f"{n}={b}" for n, b in sorted(l.get("stored_bits", {}).items()))
            status_word = l["status"] + (" (ends disagree)" if l.get("disputed") else "")
            if l.get("alarm"):
                status_word += f" ALARM {l['alarm']}" + (f" (QBER {l['qber']:.3g})" if l.get("qber") else "")
            elif l.get("qber"):
                status_word += f" (QBER {l['qber']:.3g})"
            out.append(f"{lid:<22} {l['a'] + ' - ' + l['b']:<24} {l['skr_bps']:>12.0f}  "
                       f"{stored:<22}  {status_word}")
    switch_links = status.get("links") or []
    if switch_links:
        out.append("switch links (LLDP): " + ", ".join(
            f"{a[0]}:{a[1]}-{b[0]}:{b[1]}" for a, b in switch_links))
    return "\n".join(out)


def _value(v: Any) -> str:
    if isinstance(v, list):
        if v and all(isinstance(x, list) for x in v):   # paths: A -> B -> C | A -> D -> C
            return " | ".join(" -> ".join(map(str, x)) for x in v)
        return "; ".join(map(str, v))
    return str(v)


def format_event(e: dict) -> str:
    """One line: sequence number, time, kind and the event's fields (empty ones left out)."""
    fields = {k: v for k, v in e.items() if k not in ("seq", "time", "kind") and v not in ("", None, [])}
    order = [k for k in _LEAD if k in fields] + sorted(k for k in fields if k not in _LEAD)
    text = " ".join(f"{k}={_value(fields[k])}" for k in order)
    return f"{e.get('seq', '?'):>6} {clock(e.get('time'))} {e.get('kind', '?'):<21} {text}".rstrip()


def format_events(doc: dict) -> str:
    """The ``/events`` answer: one line per event, and how many fell out of the log unread."""
    events = doc.get("events") or []
    out = [f"({doc['missed']} earlier events no longer held)"] if doc.get("missed") else []
    out += [format_event(e) for e in events] or ["no events"]
    return "\n".join(out)


def format_reload(reload: dict) -> str:
    """The policy reload state of ``/status`` in one line (and its problems under it)."""
    file = reload.get("file") or ""
    last = reload.get("last") or {}
    counts = reload.get("reloads") or {}
    if not file:
        return "default table (no policy file to reload)"
    if not last:
        return f"{file}: loaded at start, not reloaded since"
    word = f"ok ({last.get('rules', 0)} rules)" if last.get("ok") else \
        "REJECTED (the old table stays in force)"
    line = (f"{clock(last.get('time'))} {word}; {counts.get('ok', 0)} taken, "
            f"{counts.get('rejected', 0)} rejected in all; {file}")
    return "\n".join([line] + [f"    {p}" for p in last.get("problems") or []])


def format_summary(status: dict, url: str = "") -> str:
    """``qkdnet status``: QuSeC, switches, nodes, links, paths, policy reload, recent refusals."""
    core = status.get("core", {})
    nodes = core.get("nodes", {})
    online = sorted(n for n, v in nodes.items() if v.get("online"))
    offline = sorted(set(nodes) - set(online))
    links = core.get("links", {})
    up = sum(1 for x in links.values() if x.get("status") == "ACTIVE")
    disputed = sum(1 for x in links.values() if x.get("disputed"))
    rows = [
        ("QuSeC", f"{url or 'up'}; policy {core.get('policy') or 'default'}; inventory "
                  f"{core.get('inventory') or '(none)'}; gateway restarts "
                  f"{status.get('gateway_restarts', 0)}"),
        ("switches", f"{len(status.get('switches', []))} connected, {status.get('switch_links', 0)} "
                     f"links (LLDP), {core.get('flows', 0)} QuSeC flow entries"),
        ("nodes", f"{len(online)}/{len(nodes)} registered" +
                  (f"; not registered: {', '.join(offline)}" if offline else "")),
        ("QKD links", f"{up}/{len(links)} up" + (f", {disputed} disputed" if disputed else "")),
        ("paths", f"{len(core.get('paths', {}))} active relay paths"),
        ("policy reload", format_reload(status.get("policy_reload") or {})),
    ]
    out = [f"{k + ':':<15}{v}" for k, v in rows]
    refusals = status.get("recent_refusals") or []
    out.append(f"{'refusals:':<15}" + ("none recent" if not refusals else
                                       f"the last {len(refusals)} (qkdnet events for all events)"))
    out += ["  " + format_event(e) for e in refusals]
    return "\n".join(out)
