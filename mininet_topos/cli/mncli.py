"""The Mininet CLI with QKD commands: ``qkey``, ``qpaths``, ``qlinks``, ``qnodes``, ``qpolicy reload``."""
from __future__ import annotations

from typing import Any

from mininet.cli import CLI

BANNER = """QKD commands (besides Mininet's own: nodes, net, pingall, link, NODE cmd, ...):
  qkey SAE_A SAE_B [N]   N keys (default 1) via ETSI 014 from inside the SAE hosts; shows the path
  qpaths                 QuSeC's active relay paths
  qlinks                 QKD links: rate and stored key at both ends
  qnodes                 nodes, their hosts, switches, addresses and whether the agent is registered
  qpolicy reload [FILE]  re-read the policy (or install FILE as the policy)
"""


def format_key_result(r: dict) -> str:
    """One paragraph for ``qkey`` (and the demo): path, IDs, match; never key bytes."""
    head = f"{r['master']} -> {r['slave']}"
    if r.get("error"):
        return f"{head}: FAILED: {r['error']}"
    path = " -> ".join(r.get("path") or []) or "(direct)"
    lines = [f"{head}: {r['keys_matched']}/{r['keys_requested']} keys match; path {path}"
             f" ({r.get('seconds', 0):.2f} s)"]
    lines += [f"  key_ID {kid}" for kid in r.get("key_IDs", [])]
    return "\n".join(lines)


def format_paths(status: dict) -> str:
    paths = status.get("core", {}).get("paths", {})
    if not paths:
        return "no active relay paths"
    return "\n".join(f"{pid}: {' -> '.join(p['nodes'])}  rule={p['rule']} share={p['share']} "
                     f"flows={p['flows']}" for pid, p in paths.items())


def format_links(status: dict) -> str:
    links = status.get("core", {}).get("links", {})
    if not links:
        return "no QKD links reported yet"
    out = [f"{'link':<22} {'ends':<24} {'rate b/s':>12}  stored bits (per end)   status"]
    for lid, l in links.items():
        stored = ", ".join(f"{n}={b}" for n, b in sorted(l.get("stored_bits", {}).items()))
        out.append(f"{lid:<22} {l['a'] + ' - ' + l['b']:<24} {l['skr_bps']:>12.0f}  {stored:<22}  {l['status']}")
    return "\n".join(out)


def format_nodes(qnet: Any, status: dict) -> str:
    nodes = status.get("core", {}).get("nodes", {})
    out = [f"{'node':<18} {'host':<8} {'switch':<7} {'data ip':<12} {'mgmt ip':<13} registered"]
    for h in qnet.plan.node_hosts:
        online = "yes" if nodes.get(h.node, {}).get("online") else "no"
        out.append(f"{h.node:<18} {h.name:<8} {h.switch:<7} {h.ip:<12} {h.mgmt_ip:<13} {online}")
    for s in qnet.plan.sae_hosts:
        out.append(f"  SAE {s.sae} on {s.node}: host {s.name}, {s.ip}")
    return "\n".join(out)


class QkdCLI(CLI):
    """Mininet's CLI plus QKD commands; ``qnet`` is the running ``MininetNetwork``."""

    prompt = "qkdnet> "

    def __init__(self, mininet: Any, *, qnet: Any, **kwargs: Any) -> None:
        self.qnet = qnet
        print(BANNER)
        super().__init__(mininet, **kwargs)

    def _status(self) -> dict:
        try:
            return self.qnet.status()
        except OSError as exc:
            print(f"QuSeC not answering: {exc}")
            return {}

    def do_qkey(self, line: str) -> None:
        """qkey SAE_A SAE_B [N]: get N keys for SAE_A (master) and SAE_B (slave); show the path."""
        args = line.split()
        if len(args) not in (2, 3) or (len(args) == 3 and not args[2].isdigit()):
            print("usage: qkey SAE_A SAE_B [N]")
            return
        known = {h.sae for h in self.qnet.plan.sae_hosts}
        unknown = [a for a in args[:2] if a not in known]
        if unknown:
            print(f"unknown SAE {unknown[0]!r}; SAEs: {', '.join(sorted(known))}")
            return
        result = self.qnet.key_pair(args[0], args[1], int(args[2]) if len(args) == 3 else 1)
        print(format_key_result(result))

    def do_qpaths(self, _line: str) -> None:
        """qpaths: QuSeC's active relay paths."""
        print(format_paths(self._status()))

    def do_qlinks(self, _line: str) -> None:
        """qlinks: QKD links with their key rate and stored key at both ends."""
        print(format_links(self._status()))

    def do_qnodes(self, _line: str) -> None:
        """qnodes: nodes, hosts, switches, addresses, registration."""
        print(format_nodes(self.qnet, self._status()))

    def do_qpolicy(self, line: str) -> None:
        """qpolicy reload [FILE]: re-read the policy file (or install FILE) in QuSeC."""
        from quseccontroller.policy import PolicyError
        from mininet_topos.launch.lock import EmulationError
        args = line.split()
        if not args or args[0] != "reload" or len(args) > 2:
            print("usage: qpolicy reload [FILE]")
            return
        try:
            path = self.qnet.reload_policy(args[1] if len(args) == 2 else None)
        except PolicyError as exc:
            print("policy rejected (the old one stays in force):\n  " + "\n  ".join(exc.problems))
        except (OSError, EmulationError) as exc:
            print(f"policy not reloaded: {exc}")
        else:
            print(f"QuSeC reloaded its policy from {path}")
