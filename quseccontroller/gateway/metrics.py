"""The gateway's Prometheus metrics, in their own registry (served on /metrics)."""
from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


class Metrics:
    """Counters of path requests, refusals (streams, registrations, reports, releases, operator
    requests), path setup times, and gauges pulled from the app's status. No label names a path
    or an SAE: /metrics is served without authentication."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requested = Counter("qusec_paths_requested", "Path requests received", registry=r)
        self.granted = Counter("qusec_paths_granted", "Path requests granted", registry=r)
        self.refused = Counter("qusec_paths_refused", "Path requests refused", ["reason"], registry=r)
        buckets = (.001, .0025, .005, .01, .025, .05, .1, .2, .5, 1, 2, 5)
        self.setup = Histogram("qusec_path_setup_seconds", "Request to answer: flows confirmed and "
                               "authorisations acked", buckets=buckets, registry=r)
        self.setup_app = Histogram("qusec_path_setup_app_seconds", "Time in the controller app "
                                   "(core + flow barriers)", buckets=buckets, registry=r)
        self.setup_auth = Histogram("qusec_path_setup_auth_seconds", "Authorisations pushed to "
                                    "every node on the path until the last ack", buckets=buckets,
                                    registry=r)
        self.loop_lag = Histogram("qusec_gateway_loop_lag_seconds", "How late the gateway's event "
                                  "loop ran a 0.1 s timer (every push, ack and call waits as long)",
                                  buckets=buckets, registry=r)
        self.flows = Counter("qusec_flows_installed", "Relay flow entries installed", registry=r)
        self.flow_entries = Gauge("qusec_flow_entries", "QuSeC flow entries on all switches now",
                                  registry=r)
        self.paths_active = Gauge("qusec_paths_active", "Granted relay paths not yet expired",
                                  registry=r)
        self.nodes = Gauge("qusec_nodes_up", "Agents with an open control stream", registry=r)
        self.switches = Gauge("qusec_switches_up", "OpenFlow switches connected", registry=r)
        self.switch_links = Gauge("qusec_switch_links_up", "Switch links seen by LLDP", registry=r)
        self.qkd_links = Gauge("qusec_qkd_links_up", "QKD links both ends report ACTIVE, with key "
                               "levels that agree", registry=r)
        self.key_bits = Gauge("qusec_link_key_bits", "Stored link key at one end", ["node", "link"],
                              registry=r)
        self.parent_ok = Gauge("qusec_parent_export_ok", "1 while the parent controller takes this "
                               "domain's exports (absent without a parent)", registry=r)
        self.rejected = Counter("qusec_agent_streams_rejected", "Control streams refused",
                                ["reason"], registry=r)
        self.registrations_refused = Counter(
            "qusec_registrations_refused", "Control streams refused before Registered: role, "
            "node id, inventory, addresses, Register timeout, stream caps", ["reason"], registry=r)
        self.reports = Counter("qusec_reports", "Link reports the app took from agents' open streams",
                               registry=r)
        self.reports_replaced = Counter("qusec_reports_replaced", "Link reports a newer one from the "
                                        "same agent replaced before the app took them", registry=r)
        self.reports_refused = Counter("qusec_reports_refused", "Link states dropped from agents' "
                                       "reports (links the inventory does not give the node)",
                                       ["reason"], registry=r)
        self.release_refused = Counter("qusec_releases_refused", "ReleasePath calls refused",
                                       ["reason"], registry=r)
        self.operator_refused = Counter("qusec_operator_refused", "Operator HTTPS requests refused",
                                        ["reason"], registry=r)
        self.streams = Gauge("qusec_control_streams", "Open Connect streams (registered or not)",
                             registry=r)
        self.disputed = Gauge("qusec_qkd_links_disputed", "QKD links whose two ends report key "
                              "levels that disagree (not used for paths)", registry=r)
        self.switches_refused = Gauge("qusec_switches_refused", "OpenFlow connections refused "
                                      "since the app started (certificate not role switch)",
                                      ["reason"], registry=r)

        self.policy = PolicyReloadCollector()
        r.register(self.policy)

    def refresh(self, status: dict) -> None:
        """Set the gauges that mirror the app's status (``status`` bridge op)."""
        self.policy.reload = status.get("policy_reload") or self.policy.reload
        self.switches.set(len(status.get("switches", [])))
        self.switch_links.set(status.get("switch_links", 0))
        for reason, n in (status.get("switches_refused") or {}).items():
            self.switches_refused.labels(reason).set(n)
        core = status.get("core", {})
        self.flow_entries.set(core.get("flows", 0))
        self.paths_active.set(len(core.get("paths", {})))
        links = core.get("links", {}).values()
        # Up: both ends report it ACTIVE (or PASSIVE) and agree on its key levels.
        self.qkd_links.set(sum(1 for x in links if x.get("status") == "ACTIVE"))
        self.disputed.set(sum(1 for x in links if x.get("disputed")))


class PolicyReloadCollector:
    """The app's policy reload state as metrics: reloads by result (the app counts them, so the
    totals survive a gateway restart), whether the last one was taken, and when it happened."""

    def __init__(self) -> None:
        self.reload: dict = {}     # the app status's "policy_reload"

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily("qusec_policy_reloads", "Policy file reloads since the app "
                                    "started, by result (ok: taken; rejected: the old table stays)",
                                    labels=["result"])
        for result, n in sorted((self.reload.get("reloads") or {"ok": 0, "rejected": 0}).items()):
            total.add_metric([result], n)
        yield total
        last = self.reload.get("last") or {}
        if last:
            yield GaugeMetricFamily("qusec_policy_last_reload_ok", "1 when the last policy reload "
                                    "was taken, 0 when it was rejected", value=int(bool(last.get("ok"))))
            yield GaugeMetricFamily("qusec_policy_last_reload_timestamp_seconds", "Wall time of the "
                                    "last policy reload (taken or rejected)", value=last.get("time", 0))
