"""The gateway's Prometheus metrics, in their own registry (served on /metrics)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Counters of path requests and refused streams, path setup times, and gauges pulled from
    the app's status."""

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
        self.flows = Counter("qusec_flows_installed", "Relay flow entries installed", registry=r)
        self.flow_entries = Gauge("qusec_flow_entries", "QuSeC flow entries on all switches now",
                                  registry=r)
        self.paths_active = Gauge("qusec_paths_active", "Granted relay paths not yet expired",
                                  registry=r)
        self.nodes = Gauge("qusec_nodes_up", "Agents with an open control stream", registry=r)
        self.switches = Gauge("qusec_switches_up", "OpenFlow switches connected", registry=r)
        self.switch_links = Gauge("qusec_switch_links_up", "Switch links seen by LLDP", registry=r)
        self.qkd_links = Gauge("qusec_qkd_links_up", "QKD links reported ACTIVE", registry=r)
        self.key_bits = Gauge("qusec_link_key_bits", "Stored link key at one end", ["node", "link"],
                              registry=r)
        self.rejected = Counter("qusec_agent_streams_rejected", "Control streams refused",
                                ["reason"], registry=r)

    def refresh(self, status: dict) -> None:
        """Set the gauges that mirror the app's status (``status`` bridge op)."""
        self.switches.set(len(status.get("switches", [])))
        self.switch_links.set(status.get("switch_links", 0))
        core = status.get("core", {})
        self.flow_entries.set(core.get("flows", 0))
        self.paths_active.set(len(core.get("paths", {})))
