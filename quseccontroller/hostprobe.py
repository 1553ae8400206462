"""ARP probes for registered vKMS hosts that have not spoken yet, so their relay flows can be planned."""
from __future__ import annotations

from quseccontroller import ofmsgs
from quseccontroller.actions import FlowMods
from quseccontroller.state import NetworkState


class HostProber:
    """Probes each quiet vKMS data address at most every ``interval_s``."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = float(interval_s)
        self._probed: dict[str, float] = {}   # vKMS data IP -> when it was last ARP-probed

    def forget(self) -> None:
        """Probe again at the next chance (a new switch: quiet hosts may sit behind it)."""
        self._probed.clear()

    def probe(self, st: NetworkState, now: float) -> list[FlowMods]:
        """ARP-probe, out of every switch port that is not a switch link, each registered vKMS
        whose attachment point is still unknown (at most every ``interval_s`` per address)."""
        if not st.switch_ports:   # nothing to probe through (and no scan of every agent)
            return []
        quiet = sorted(a.data_ip for a in st.agents.values()
                       if a.data_ip and a.data_ip not in st.hosts and a.node_id in st.online
                       and now - self._probed.get(a.data_ip, -1e18) >= self.interval_s)
        if not quiet:
            return []
        acts: list[FlowMods] = []
        for dpid in sorted(st.switch_ports):
            edge = sorted(st.edge_ports(dpid) - {h.port for h in st.hosts.values() if h.dpid == dpid})
            if edge:
                acts.append(FlowMods(dpid, [ofmsgs.arp_probe(ip, edge) for ip in quiet]))
        for ip in quiet:
            self._probed[ip] = now
        return acts
