"""The dashboard's view model (pure): QuSeC's status, events and counters in, the page's JSON out.

``DashboardView.update(status, events, counters, now)`` takes what the gateway read from the app
(its ``status`` op, the events after the last one seen, the gateway's own path counters) and
returns the delta the open pages need (only what changed; ``{}`` for nothing); ``snapshot()`` is
everything a page that just connected needs. No sockets, no clock: time is passed in.

What the page shows and where it comes from (docs/dashboard.md says the same for users):

* nodes: the app's nodes (trust level, agent online), drawn at their location or a stable layout;
* QKD links: the lower of the two ends' stored key, coloured against ``EMPTY_BITS`` and
  ``LOW_BITS`` (``level``), with the key rate, consumption, status and any alarm;
* classical links: the switch links between the switches the nodes' agent hosts attach to;
* paths: the granted paths grouped per SAE pair (the SAEs, rule and security level come from
  the ``path_granted`` event that granted them);
* refusals, the event log (each event with a one-line ``text``), a stored-key series per link
  (one point per ``step_s`` over ``window_s``) and key delivery KPIs over the same window.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Iterable

from quseccontroller.dashboard.layout import layout

WINDOW_S = 300.0        # KPIs and the stored-key series cover the last five minutes
STEP_S = 5.0            # one series point per link every STEP_S
EVENTS_KEPT = 200       # the event log a page gets on connecting
EMPTY_BITS = 1024       # below: "empty" (four 256-bit keys)
LOW_BITS = 65536        # below: "low" (256 keys of 256 bits)
LEVELS = ("off", "empty", "low", "ok")


def link_level(stored_bits: int, status: str) -> str:
    """The colour class of a QKD link: off (not usable), empty, low or ok."""
    if status == "OFF":
        return "off"
    if stored_bits < EMPTY_BITS:
        return "empty"
    if stored_bits < LOW_BITS:
        return "low"
    return "ok"


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``[(upper bound, count), ...]`` (the last
    bound may be inf), interpolated inside the bucket as Prometheus does; None when empty."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, cum in buckets:
        if cum >= rank:
            if le == float("inf"):
                return lower
            inside = cum - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = le, cum
    return lower


def _rate(bps: float) -> str:
    for unit, scale in (("Mb/s", 1e6), ("kb/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} b/s"


def describe(event: dict) -> str:
    """One line for an event of QuSeC's log (names nodes, SAEs, links and rules only)."""
    k = event.get("kind", "")
    pair = f"{event.get('src_sae') or event.get('src', '?')} -> {event.get('dst_sae') or event.get('dst', '?')}"
    if k == "path_granted":
        paths = " | ".join("-".join(p) for p in event.get("paths", []))
        return (f"path granted {pair}: {paths} (rule {event.get('rule', '?')}, "
                f"{event.get('security_level') or 'qkd'})")
    if k == "path_refused":
        return f"path refused {pair}: {event.get('reason', '?')}: {event.get('message', '')}".rstrip(": ")
    if k == "reroute":
        if event.get("result") == "moved":
            return f"path {event.get('path_id', '?')} rerouted over {'-'.join(event.get('nodes', []))}"
        return f"path {event.get('path_id', '?')} revoked: {event.get('reason', '')}"
    if k in ("qkd_link_up", "qkd_link_down"):
        return f"QKD link {event.get('link', '?')} {'up' if k.endswith('up') else 'down'} ({event.get('status', '')})"
    if k == "qkd_alarm":
        qber = event.get("qber")
        what = "alarm cleared" if event.get("state") == "cleared" else "ALARM"
        return (f"QKD link {event.get('link', '?')} {what} at {event.get('node', '?')}: "
                f"{event.get('reason', '?')}" + (f" (QBER {float(qber):.3f})" if qber else ""))
    if k in ("switch_link_up", "switch_link_down"):
        return (f"switch link {event.get('a_dpid', '?')}:{event.get('a_port', '?')} - "
                f"{event.get('b_dpid', '?')}:{event.get('b_port', '?')} {k.rsplit('_', 1)[1]}")
    if k in ("switch_up", "switch_down"):
        return f"switch {event.get('dpid', '?')} {'connected' if k.endswith('up') else 'left'}"
    if k == "agent_registered":
        return f"agent {event.get('node', '?')} joined"
    if k == "agent_left":
        return f"agent {event.get('node', '?')} left"
    if k == "registration_refused":
        return f"registration refused: {event.get('node') or '?'}: {event.get('reason', '?')}"
    if k == "policy_reloaded":
        return f"policy reloaded: {event.get('rules', '?')} rules"
    if k == "policy_rejected":
        problems = event.get("problems") or []
        return f"policy file rejected (old table kept): {problems[0] if problems else '?'}"
    return k.replace("_", " ")


def _event_row(event: dict) -> dict:
    return {"seq": event.get("seq", 0), "time": event.get("time", 0.0), "kind": event.get("kind", ""),
            "refusal": event.get("kind") in ("path_refused", "registration_refused", "policy_rejected"),
            "alarm": event.get("kind") == "qkd_link_down" or (
                event.get("kind") == "qkd_alarm" and event.get("state") != "cleared"),
            "text": describe(event)}


def _diff(old: dict, new: dict) -> tuple[dict, list]:
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    return changed, sorted(set(old) - set(new))


class DashboardView:
    """What the open pages show, kept current from the app's status and events."""

    def __init__(self, *, window_s: float = WINDOW_S, step_s: float = STEP_S,
                 events_kept: int = EVENTS_KEPT):
        self.window_s = window_s
        self.step_s = step_s
        self.app_up = False
        self.layout_kind = "stable"
        self.nodes: dict[str, dict] = {}
        self.links: dict[str, dict] = {}
        self.classical: list[dict] = []
        self.pairs: list[dict] = []
        self.refusals: list[dict] = []
        self.kpis: dict[str, Any] = {}
        self.events: deque[dict] = deque(maxlen=events_kept)
        self.series: dict[str, deque] = {}
        self.last_seq = 0
        self._grants: dict[str, dict] = {}        # path id -> the path_granted event's pair info
        self._layout_key: tuple = ()
        self._positions: dict[str, tuple[float, float]] = {}
        self._samples: deque[tuple[float, dict]] = deque()
        self._grant_times: deque[tuple[float, bool]] = deque()   # (time, granted) from the events

    # -- input -------------------------------------------------------------------------------
    def update(self, status: dict | None, events: Iterable[dict] = (), counters: dict | None = None,
               now: float = 0.0) -> dict:
        """Take the app's ``status`` (None or {}: the app is away), the events after
        ``last_seq`` and the gateway's counters; returns the delta for open pages."""
        new_events = [e for e in events if e.get("seq", 0) > self.last_seq]
        for e in new_events:
            self.last_seq = e["seq"]
            if e.get("kind") == "path_granted":
                info = {f: e.get(f, "") for f in ("src", "dst", "src_sae", "dst_sae", "rule",
                                                   "security_level", "application")}
                for pid in e.get("path_ids", []):
                    self._grants[pid] = info
            if e.get("kind") in ("path_granted", "path_refused"):
                self._grant_times.append((float(e.get("time", now)), e["kind"] == "path_granted"))
        self.events.extend(_event_row(e) for e in new_events)
        delta: dict[str, Any] = {}
        if new_events:
            delta["events"] = [_event_row(e) for e in new_events]
        app_up = bool(status)
        if app_up != self.app_up:
            self.app_up = delta["app"] = app_up
        if status:
            self._take_status(status, now, delta)
        if counters is not None:
            self._samples.append((now, counters))
        kpis = self._kpis(now)
        if kpis != self.kpis:
            self.kpis = delta["kpis"] = kpis
        if delta:
            delta["time"] = round(now, 3)
        return delta

    def _take_status(self, status: dict, now: float, delta: dict) -> None:
        core = status.get("core") or {}
        raw_nodes = core.get("nodes") or {}
        raw_links = core.get("links") or {}
        locations = {n: v.get("location") for n, v in raw_nodes.items()}
        key = (tuple(sorted(raw_nodes)), tuple(sorted((v.get("a"), v.get("b")) for v in raw_links.values())),
               tuple(sorted((n, tuple(v)) for n, v in locations.items() if v)))
        if key != self._layout_key:
            self._layout_key = key
            kind, self._positions = layout(raw_nodes, [(v.get("a"), v.get("b")) for v in raw_links.values()],
                                           locations)
            if kind != self.layout_kind:
                self.layout_kind = delta["layout"] = kind
        node_switch = {n: v.get("switch") for n, v in raw_nodes.items()}
        nodes = {n: {"id": n, "x": self._positions.get(n, (0, 0))[0], "y": self._positions.get(n, (0, 0))[1],
                     "trust": v.get("trust"), "online": bool(v.get("online")),
                     "switch": node_switch.get(n)} for n, v in raw_nodes.items()}
        paths = core.get("paths") or {}
        on_link = self._path_links(paths, raw_links)
        links = {}
        for lid, v in raw_links.items():
            stored = {n: int(b) for n, b in (v.get("stored_bits") or {}).items()}
            low = min(stored.values()) if stored else 0
            cons = v.get("consumption_bps") or {}
            links[lid] = {"id": lid, "a": v.get("a"), "b": v.get("b"), "skr_bps": v.get("skr_bps", 0.0),
                          "stored_bits": low, "stored": stored,
                          "consumption_bps": max(cons.values()) if isinstance(cons, dict) and cons
                          else float(cons) if isinstance(cons, (int, float)) else None,
                          "status": v.get("status", "OFF"), "level": link_level(low, v.get("status", "OFF")),
                          "disputed": v.get("disputed", ""), "alarm": v.get("alarm") or "",
                          "qber": v.get("qber"), "paths": on_link.get(lid, 0),
                          "label": f"{_rate(float(v.get('skr_bps', 0.0)))}"}
        for name, new in (("nodes", nodes), ("links", links)):
            changed, removed = _diff(getattr(self, name), new)
            if changed:
                delta[name] = changed
            if removed:
                delta[name + "_removed"] = removed
            setattr(self, name, new)
        classical = self._classical(status, node_switch)
        if classical != self.classical:
            self.classical = delta["classical"] = classical
        self._grants = {pid: g for pid, g in self._grants.items() if pid in paths}
        pairs = self._pairs(paths, raw_links)
        if pairs != self.pairs:
            self.pairs = delta["pairs"] = pairs
        refusals = [_event_row(e) | {"reason": e.get("reason", "")} for e in status.get("recent_refusals") or []]
        if refusals != self.refusals:
            self.refusals = delta["refusals"] = refusals
        points = self._sample_series(now)
        if points:
            delta["series"] = points

    @staticmethod
    def _link_between(raw_links: dict, a: str, b: str) -> str | None:
        for lid, v in sorted(raw_links.items()):
            if {v.get("a"), v.get("b")} == {a, b}:
                return lid
        return None

    def _path_links(self, paths: dict, raw_links: dict) -> dict[str, int]:
        count: dict[str, int] = {}
        for p in paths.values():
            nodes = p.get("nodes") or []
            for a, b in zip(nodes, nodes[1:]):
                lid = self._link_between(raw_links, a, b)
                if lid:
                    count[lid] = count.get(lid, 0) + 1
        return count

    def _pairs(self, paths: dict, raw_links: dict) -> list[dict]:
        groups: dict[tuple, dict] = {}
        for pid, p in sorted(paths.items()):
            nodes = list(p.get("nodes") or [])
            g = self._grants.get(pid, {})
            src_sae, dst_sae = g.get("src_sae", ""), g.get("dst_sae", "")
            key = (src_sae or (nodes[0] if nodes else "?"), dst_sae or (nodes[-1] if nodes else "?"))
            group = groups.setdefault(key, {
                "src_sae": src_sae, "dst_sae": dst_sae, "src": nodes[0] if nodes else "",
                "dst": nodes[-1] if nodes else "", "rule": p.get("rule") or g.get("rule", ""),
                "security_level": g.get("security_level") or "", "paths": []})
            links = [self._link_between(raw_links, a, b) for a, b in zip(nodes, nodes[1:])]
            group["paths"].append({"id": pid, "nodes": nodes, "share": p.get("share", "1/1"),
                                   "links": [x for x in links if x]})
        return [groups[k] for k in sorted(groups)]

    @staticmethod
    def _classical(status: dict, node_switch: dict) -> list[dict]:
        """Switch links between switches the app maps to nodes, as node pairs."""
        node_of = {int(d): n for n, d in node_switch.items() if d is not None}
        out = set()
        for link in status.get("links") or []:
            try:
                (da, _), (db, _) = link
            except (TypeError, ValueError):
                continue
            a, b = node_of.get(int(da)), node_of.get(int(db))
            if a and b and a != b:
                out.add(tuple(sorted((a, b))))
        return [{"a": a, "b": b} for a, b in sorted(out)]

    def _sample_series(self, now: float) -> dict[str, list]:
        points: dict[str, list] = {}
        for lid, link in self.links.items():
            s = self.series.setdefault(lid, deque())
            while s and s[0][0] < now - self.window_s:
                s.popleft()
            if s and now - s[-1][0] < self.step_s:
                continue
            s.append((round(now, 1), link["stored_bits"]))
            points[lid] = [list(s[-1])]
        for lid in set(self.series) - set(self.links):
            del self.series[lid]
        return points

    # -- KPIs --------------------------------------------------------------------------------
    def _kpis(self, now: float) -> dict[str, Any]:
        """Key delivery KPIs over the window (in the spirit of ITU-T Y.3807): path requests,
        grants, failures, availability (granted / requested), key response delay p50/p99 (the
        gateway's path setup time), and how much of the network is up now."""
        start = now - self.window_s
        while self._samples and self._samples[0][0] < start:
            self._samples.popleft()
        while self._grant_times and self._grant_times[0][0] < start:
            self._grant_times.popleft()
        out: dict[str, Any] = {"window_s": self.window_s}
        if len(self._samples) >= 2:
            (t0, first), (_, last) = self._samples[0], self._samples[-1]
            requested = last.get("requested", 0) - first.get("requested", 0)
            granted = last.get("granted", 0) - first.get("granted", 0)
            refused = last.get("refused", 0) - first.get("refused", 0)
            before = dict(first.get("setup_buckets") or [])
            buckets = [(le, cum - before.get(le, 0)) for le, cum in last.get("setup_buckets") or []]
            out["window_s"] = round(now - t0, 1)     # the oldest sample in the window to now
        elif self._samples:
            requested = granted = refused = 0
            buckets = []
        else:   # no counters: count the app's grant and refusal events
            granted = sum(1 for _, ok in self._grant_times if ok)
            refused = len(self._grant_times) - granted
            requested = granted + refused
            buckets = []
        p50, p99 = quantile(0.5, buckets), quantile(0.99, buckets)
        out.update({"requests": int(requested), "granted": int(granted), "failures": int(refused),
                    "availability": round(granted / requested, 4) if requested else None,
                    "delay_p50_ms": round(p50 * 1000, 2) if p50 is not None else None,
                    "delay_p99_ms": round(p99 * 1000, 2) if p99 is not None else None})
        out["links_up"] = sum(1 for x in self.links.values() if x["status"] != "OFF")
        out["links"] = len(self.links)
        out["nodes_online"] = sum(1 for x in self.nodes.values() if x["online"])
        out["nodes"] = len(self.nodes)
        out["paths"] = sum(len(p["paths"]) for p in self.pairs)
        return out

    # -- output ------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Everything a page that just connected needs."""
        return {"app": self.app_up, "layout": self.layout_kind, "nodes": self.nodes,
                "links": self.links, "classical": self.classical, "pairs": self.pairs,
                "refusals": self.refusals, "events": list(self.events), "kpis": self.kpis,
                "series": {lid: [list(p) for p in s] for lid, s in self.series.items()},
                "thresholds": {"empty_bits": EMPTY_BITS, "low_bits": LOW_BITS},
                "window_s": self.window_s, "last_seq": self.last_seq}
