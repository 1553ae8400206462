"""The Mininet CLI with QKD commands: ``qkey``, ``qpaths``, ``qlinks``, ``qnodes``, ``qlink``
(switch links; ``qlink A B qkd ...``: QKD link faults, ``mininet_topos.cli.qlink``),
``qpolicy reload``. Its tables of QuSeC's status are ``qkdnet links|paths``'s
(``mininet_topos.cli.views``)."""
from __future__ import annotations

from typing import Any

from mininet.cli import CLI

from mininet_topos.cli.views import format_links, format_paths


BANNER = """QKD commands (besides Mininet's own: nodes, net, pingall, link, NODE cmd, ...):
  qkey SAE_A SAE_B [N]   N keys (default 1) via ETSI 014 from inside the SAE hosts; shows the path
  qpaths                 QuSeC's active relay paths
  qlinks                 QKD links: rate and stored key at both ends
  qnodes                 nodes, their hosts, switches, addresses and whether the agent is registered
  qlink A B down|up      take the switch link between nodes (or SAEs) A and B down, or up again
  qlink A B qkd down|up|qber X [--link ID]
                         a fault on the QKD link between A and B (at both ends): no key (down),
                         a QBER (from 0.11 an alarm: no key, QuSeC reroutes), or cleared (up)
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


def format_nodes(qnet: Any, status: dict) -> str:
    nodes = status.get("core", {}).get("nodes", {})
    out = [f"{'node':<18} {'host':<8} {'switch':<7} {'data ip':<12} {'mgmt ip':<13} registered"]
    for h in qnet.plan.node_hosts:
        online = "yes" if nodes.get(h.node, {}).get("online") else "no"
        out.append(f"{h.node:<18} {h.name:<8} {h.switch:<7} {h.ip:<12} {h.mgmt_ip:<13} {online}")
    for s in qnet.plan.sae_hosts:
        out.append(f"  SAE {s.sae} on {s.node}: host {s.name}, {s.ip}")
    return "\n".join(out)


def resolve_node(plan: Any, name: str) -> str | None:
    """The node ``name`` means: a node id, an SAE id (its node), or a host's Mininet name."""
    for h in plan.node_hosts:
        if name in (h.node, h.name):
            return h.node
    for s in plan.sae_hosts:
        if name in (s.sae, s.name):
            return s.node
    return None


def switch_neighbours(plan: Any, node: str) -> list[str]:
    """The nodes whose switches have a link to ``node``'s switch."""
    out = {l.node_b for l in plan.links if l.node_a == node} | \
        {l.node_a for l in plan.links if l.node_b == node}
    return sorted(out - {node})


QKD_USAGE = "usage: qlink A B qkd down|up|qber X [--link ID]   (A, B: node or SAE ids; X: 0..0.5)"


def qlink_qkd(line: str) -> tuple[str, str, list[str], str | None] | str | None:
    """``qlink A B qkd FAULT [--link ID]`` as (A, B, the fault's words, the link or None), the
    usage to print, or None when the line is not about a QKD link (``qlink_target``'s then)."""
    args = line.split()
    if len(args) < 3 or args[2] != "qkd":
        return None
    words, link = args[3:], None
    if "--link" in words:
        i = words.index("--link")
        if i + 1 >= len(words):
            return QKD_USAGE
        link, words = words[i + 1], words[:i] + words[i + 2:]
    if not words:
        return QKD_USAGE
    return args[0], args[1], words, link


def qlink_target(plan: Any, line: str) -> tuple[str, str, bool] | str:
    """``qlink A B down|up`` as (node A, node B, up), or the message to print instead."""
    args = line.split()
    if len(args) != 3 or args[2] not in ("down", "up"):
        return "usage: qlink A B down|up   (A, B: node or SAE ids, as qnodes lists them)"
    nodes = []
    for name in args[:2]:
        node = resolve_node(plan, name)
        if node is None:
            return (f"unknown node or SAE {name!r}; nodes: "
                    + ", ".join(h.node for h in plan.node_hosts))
        nodes.append(node)
    a, b = nodes
    if a == b:
        return f"{args[0]} and {args[1]} are both on node {a}: no link between them"
    if b not in switch_neighbours(plan, a):
        near = switch_neighbours(plan, a)
        return (f"nodes {a} and {b} are not neighbours (no switch link between them); "
                f"{a}'s neighbours: {', '.join(near) or 'none'}")
    return a, b, args[2] == "up"


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

    def do_qlink(self, line: str) -> None:
        """qlink A B down|up: the switch link between nodes (or SAEs) A and B down or up again;
        qlink A B qkd down|up|qber X [--link ID]: a fault on the QKD link between them."""
        qkd = qlink_qkd(line)
        if qkd is not None:
            self._qlink_qkd(qkd)
            return
        target = qlink_target(self.qnet.plan, line)
        if isinstance(target, str):
            print(target)
            return
        a, b, up = target
        self.qnet.set_link(a, b, up)
        print(f"switch link {self.qnet.switch_name(a)} - {self.qnet.switch_name(b)} "
              f"(nodes {a} - {b}) {'up' if up else 'down'}")

    def _qlink_qkd(self, qkd: tuple[str, str, list[str], str | None] | str) -> None:
        from mininet_topos.cli import qlink
        if isinstance(qkd, str):
            print(qkd)
            return
        a, b, words, link = qkd
        try:
            print(qlink.describe(qlink.apply(self.qnet.network_json, a, b, words, link)))
        except qlink.QlinkError as exc:
            print(f"qlink: {exc}")

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
