"""``qkdnet up TOPOLOGY [--local] [--no-cli] [--policy FILE]``: bring a QKD network up until interrupted."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2   # a topology or policy file the checkers refuse (nothing was started)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="bring a QKD network up and keep it running until Ctrl-C",
                       description="Bring a QKD network up (Mininet + OVS by default; --local runs every "
                                   "node as a plain process on loopback) and write DIR/network.json. "
                                   "The topology and the policy file are checked before anything "
                                   "starts; a broken one exits with code 2 and the checker's messages.")
    p.add_argument("topology", nargs="?", default="metro8",
                   help="topology file, shipped name or mesh:N[:SEED] (default: metro8)")
    p.add_argument("--local", action="store_true", help="plain processes on loopback (no root, no OpenFlow)")
    p.add_argument("--state-dir", help="where configs, keys, logs and network.json go "
                                       "(default: /tmp/qkdnet-TOPOLOGY)")
    p.add_argument("--policy", metavar="FILE",
                   help="QuSeC policy file (TOML, docs/policy.md); default: allow everything, one "
                        "key-aware path, security level qkd")
    p.add_argument("--no-cli", action="store_true",
                   help="Mininet mode: no Mininet CLI; stay up until SIGTERM or Ctrl-C (also the "
                        "behaviour when stdin is not a terminal)")
    p.add_argument("--no-qusec", action="store_true", help="--local: do not start QuSeC (neighbours only)")
    p.add_argument("--wait-lock", type=float, default=None, metavar="SECONDS",
                   help="Mininet mode: wait at most this long for another Mininet network to "
                        "finish (default: as long as it runs)")
    p.add_argument("--cluster", metavar="SERVER[,SERVER...]",
                   help="Mininet mode over several servers (the first is this machine, where QuSeC "
                        "runs; the others over ssh with passwordless sudo; docs/emulation.md)")
    p.add_argument("--ssh-config", metavar="FILE",
                   help="--cluster: the ssh client config that reaches the other servers "
                        "(default: ssh's own)")
    p.add_argument("--domain", metavar="NAME",
                   help="multi-domain topology: bring up this one domain on its own (its nodes, "
                        "QKD links and SAEs, under one QuSeC)")
    p.set_defaults(func=run)


def one_network(topo: Any, domain: str | None, spec: str, local: bool = False) -> tuple[Any, list[str]]:
    """What to bring up: the topology, one domain of a multi-domain one, or every domain under a
    parent controller (``--local``, or in one Mininet)."""
    if domain is not None:
        if not topo.multi_domain:
            return None, [f"{spec}: --domain {domain}: the topology has no [[domains]]"]
        if domain not in topo.domains:
            return None, [f"{spec}: --domain {domain}: unknown domain; known: {', '.join(topo.domains)}"]
        return topo.domain_view(domain), []
    if topo.multi_domain and not local:
        from mininet_topos.launch.plan import TopoPlanError, plan
        try:
            plan(topo)
        except TopoPlanError as exc:
            return None, [str(exc)]
    return topo, []


def check_inputs(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """Load the topology and check the policy file: (Topology or None, problems).

    Pure reading: no process, file or network is created, so a broken input fails before
    anything starts.
    """
    from mininet_topos import topology as topo_mod
    problems: list[str] = []
    topo = None
    try:
        topo = topo_mod.load(args.topology)
    except topo_mod.TopologyError as exc:
        problems += exc.problems
    if topo is not None:
        topo, more = one_network(topo, getattr(args, "domain", None), args.topology,
                                 bool(getattr(args, "local", False)))
        problems += more
    policy = getattr(args, "policy", None)
    if policy:
        from quseccontroller.policy import PolicyError, load as load_policy
        try:
            load_policy(policy)
        except PolicyError as exc:
            problems += exc.problems
    if getattr(args, "cluster", None):
        from mininet_topos.launch.servers import problems as cluster_problems
        problems += cluster_problems(args.cluster, topo, bool(getattr(args, "local", False)))
    return topo, problems


def run(args: argparse.Namespace) -> int:
    topo, problems = check_inputs(args)
    if problems:
        print("qkdnet up: nothing started; fix these first:", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    state = Path(args.state_dir or f"/tmp/qkdnet-{topo.name}")
    if args.local:
        return run_local(topo, state, args)
    return run_mininet(topo, state, args)


class Interrupted(BaseException):
    """SIGTERM or SIGINT while waiting or bringing a network up (a BaseException, like
    KeyboardInterrupt, so no ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def _on_signals(handler: Any) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def _until_signal(dead: Any, logs: str) -> int:
    """Serve until SIGTERM/SIGINT (0) or an agent exits (1)."""
    stop = threading.Event()
    _on_signals(lambda *_: stop.set())
    while not stop.wait(1.0):
        gone = dead()
        if gone:
            print(f"agent(s) {gone} exited; see {logs}", file=sys.stderr)
            return 1
    return 0


def run_local(topo: Any, state: Path, args: argparse.Namespace) -> int:
    """``qkdnet up TOPOLOGY --local``: every node as a plain process on loopback. A signal during
    bring-up stops it at once and stops what was started."""
    from mininet_topos.launch.local import LaunchError, LocalNetwork
    _on_signals(_interrupt)
    if topo.multi_domain:
        from mininet_topos.launch.domains import MultiDomainNetwork
        net: Any = MultiDomainNetwork(topo, state, progress=sys.stdout, policy=getattr(args, "policy", None))
        dead, logs = net.dead, f"{state}/domains/DOMAIN/NODE/agent.log"
    else:
        net = LocalNetwork(topo, state, with_qusec=not getattr(args, "no_qusec", False), progress=sys.stdout,
                           policy=getattr(args, "policy", None))
        dead, logs = net.fleet.dead, f"{state}/NODE/agent.log"
    try:
        net.start()
        if topo.multi_domain:
            print(f"up; each domain's network.json is named in {net.network_json}; inside a domain: "
                  f"qkdnet key --network {state}/domains/DOMAIN/network.json MASTER_SAE SLAVE_SAE")
        else:
            print(f"up; get a key with: qkdnet key --network {net.network_json} MASTER_SAE SLAVE_SAE")
        print("Ctrl-C (or SIGTERM) stops every process.", flush=True)
        return _until_signal(dead, logs)
    except LaunchError as exc:
        print(f"qkdnet up: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"qkdnet up: {exc} during bring-up; stopping what was started", flush=True)
        return 128 + exc.signum
    finally:
        _on_signals(signal.SIG_IGN)     # stopping is not interrupted
        net.stop()
        print("stopped every process", flush=True)


def run_mininet(topo: Any, state: Path, args: argparse.Namespace) -> int:
    """``qkdnet up TOPOLOGY``: Mininet + OVS under QuSeC (root). SIGTERM/SIGINT while waiting for
    the Mininet lock or during bring-up stops it at once (and stops what was started)."""
    if os.geteuid() != 0:
        print("qkdnet up: Mininet needs root (or use --local for plain processes)", file=sys.stderr)
        return 2
    try:
        from mininet_topos.launch.lock import EmulationError, mininet_lock
        if getattr(args, "cluster", None):     # the same network over several servers
            from functools import partial

            from mininet_topos.launch.cluster import ClusterNetwork
            MininetNetwork: Any = partial(ClusterNetwork, servers=args.cluster,  # noqa: N806
                                          ssh_config=getattr(args, "ssh_config", None))
        else:
            from mininet_topos.launch.mininet import MininetNetwork
    except ModuleNotFoundError as exc:
        if exc.name != "mininet" and not (exc.name or "").startswith("mininet."):
            raise
        print("qkdnet up: Mininet is not installed in this environment (pip install "
              "'qusec[emulation]', or make setup); --local needs no Mininet", file=sys.stderr)
        return 2
    no_cli = bool(getattr(args, "no_cli", False)) or not sys.stdin.isatty()
    _on_signals(_interrupt)
    try:
        with mininet_lock(sys.stdout, timeout=getattr(args, "wait_lock", None)):
            if topo.multi_domain:
                from mininet_topos.launch.mininet_domains import MininetDomains
                net: Any = MininetDomains(topo, state, policy=getattr(args, "policy", None), progress=sys.stdout)
            else:
                net = MininetNetwork(topo, state, policy=getattr(args, "policy", None), progress=sys.stdout)
            return _mininet_up(net, no_cli, EmulationError)
    except EmulationError as exc:          # the lock wait timed out
        print(f"qkdnet up: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"qkdnet up: {exc} while waiting for the Mininet lock; nothing was started", flush=True)
        return 128 + exc.signum


def _mininet_up(net: Any, no_cli: bool, error: type[Exception]) -> int:
    ok = up = False
    try:
        net.start()
        up = True
        if no_cli:
            sae = net.plan.sae_hosts[0] if net.plan.sae_hosts else None
            print("up; SIGTERM or Ctrl-C stops it. SAE hosts reach the vKMSs on the data plane, e.g.\n"
                  + (f"  mnexec -a {net.net.get(sae.name).pid} {Path(sys.executable).with_name('qkdnet')} "
                     f"key --network {net.network_of(sae.sae)} {sae.sae} OTHER_SAE" if sae else ""),
                  flush=True)
            rc = _until_signal(net.dead, net.agent_logs)
        else:
            from mininet_topos.cli.mncli import QkdCLI
            # Mininet's CLI reads Ctrl-C as "abort this command"; SIGTERM ends the CLI.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            QkdCLI(net.net, qnet=net)
            rc = 0
        ok = True
        return rc
    except error as exc:
        print(f"qkdnet up: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        if up:                          # SIGTERM ends the CLI: an ordinary stop
            ok = True
            return 0
        print(f"qkdnet up: {exc} during bring-up; stopping what was started", flush=True)
        return 128 + exc.signum
    except KeyboardInterrupt:
        ok = True
        return 130
    finally:
        _on_signals(signal.SIG_IGN)     # stopping is not interrupted
        net.stop()
        if not ok:
            net.cleanup()
        print("stopped: agents, Mininet network and QuSeC", flush=True)
