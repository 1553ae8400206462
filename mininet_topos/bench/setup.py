"""``qkdnet bench setup``: relay path setup latency and rate through the real controller in Mininet.

Runs ``osken-manager quseccontroller.app`` with real OVS switches (userspace datapath where
there is no kernel module) and in-process gRPC clients standing in for the vKMS agents:

* latency: a 10-hop path on a line of 11 switches, one node host per switch; each sample
  is one RequestPath, timed from the call to the answer (flows barrier-confirmed on every
  switch, authorisations delivered and acked); the gateway hop (gRPC + bridge, without the
  app's work and the authorisation round trip) is reported separately from the trailers;
* rate: concurrent clients setting up and releasing paths between random node pairs on a
  ring of 20 switches for a fixed time.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from mininet_topos.bench.stats import percentile

RELAY_PORT = 7000


def add_parser(benches: argparse._SubParsersAction) -> None:
    p = benches.add_parser(
        "setup", help="relay path setup latency and rate through QuSeC in Mininet (root)",
        description="Path setup through the real controller and OVS switches in Mininet: "
                    "latency on a 10-hop line, sustained setups/s on a 20-switch ring.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--hops", type=int, default=10, help="hops of the latency path (line of hops+1)")
    p.add_argument("--requests", type=int, default=300, help="latency samples")
    p.add_argument("--switches", type=int, default=20, help="switches in the rate ring")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of sustained load")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients for the rate")
    p.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------ agent stand-in


class BenchAgent:
    """A vKMS stand-in: holds the control stream and acks every authorisation at once."""

    def __init__(self, addr: str, ca: str, cert: str, key: str, node: str, ip: str,
                 links: list) -> None:
        import grpc

        from quseccontroller.proto import control_pb2, control_pb2_grpc
        self.pb = control_pb2
        creds = grpc.ssl_channel_credentials(Path(ca).read_bytes(), Path(key).read_bytes(),
                                             Path(cert).read_bytes())
        self.channel = grpc.secure_channel(addr, creds)
        self.stub = control_pb2_grpc.QuSeCControlStub(self.channel)
        self.node = node
        self.out: queue.Queue = queue.Queue()
        self.registered = threading.Event()
        self.out.put(control_pb2.AgentMessage(register=control_pb2.Register(
            node_id=node, relay_addr=f"{ip}:{RELAY_PORT}", data_ip=ip, trust_level=3,
            links=links, saes=[f"sae-{node}"], agent_version="bench")))
        self.call = self.stub.Connect(iter(self.out.get, None))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        import grpc
        try:
            for msg in self.call:
                kind = msg.WhichOneof("body")
                if kind == "registered":
                    self.registered.set()
                elif kind == "authorise":
                    self.out.put(self.pb.AgentMessage(
                        auth_ack=self.pb.AuthorisationAck(path_id=msg.authorise.path_id)))
        except grpc.RpcError:
            pass

    def setup(self, dst: str) -> tuple[float, dict, list[str]]:
        """One RequestPath: (client-observed ms, trailers, path ids)."""
        t0 = time.perf_counter()
        reply, call = self.stub.RequestPath.with_call(self.pb.PathRequest(
            src_node=self.node, dst_node=dst, key_size_bits=256, key_count=1), timeout=30)
        ms = (time.perf_counter() - t0) * 1000
        return ms, dict(call.trailing_metadata()), [p.path_id for p in reply.paths]

    def release(self, path_ids: list[str]) -> None:
        for pid in path_ids:
            self.stub.ReleasePath(self.pb.ReleaseRequest(path_id=pid), timeout=30)

    def close(self) -> None:
        self.out.put(None)
        self.call.cancel()
        self.channel.close()


# ------------------------------------------------------------------------------- the network


@contextlib.contextmanager
def qkd_line_network(n: int, ring: bool, workdir: Path):
    """Controller + Mininet: n switches (line or ring), one node host each, agents registered."""
    from mininet.clean import cleanup
    from mininet.net import Mininet
    from mininet.node import OVSSwitch
    from mininet.topo import Topo

    from mininet_topos.provision.pki import build_pki
    from mininet_topos.launch import ovs
    from mininet_topos.model import Node, Topology
    from mininet_topos.launch.topos import QuSeCRemote, tx_checksum_off
    from mininet_topos.launch.controller import Controller
    from mininet_topos.launch.operator import OperatorClient
    from quseccontroller.proto import control_pb2

    nodes = [f"n{i}" for i in range(n)]
    ips = {node: f"10.1.{i // 250}.{i % 250 + 1}" for i, node in enumerate(nodes)}
    pairs = [(i, (i + 1) % n) for i in range(n if ring else n - 1)]
    # node certificates name the data IPs the agents register (QuSeC checks them)
    pki = build_pki(Topology(name="bench", nodes={x: Node(x) for x in nodes}, links=[]), workdir / "pki",
                    {x: [ips[x]] for x in nodes})
    ctl = Controller(workdir / "state", ca_cert=pki.ca_cert, cert=pki.qusec_cert, key=pki.qusec_key,
                     of_listen="127.0.0.1:0", path_ttl=600)

    class Line(Topo):
        def build(self):
            for i, node in enumerate(nodes):
                self.addSwitch(f"qb{i + 1}", dpid=f"{i + 1:016x}")
                self.addHost(f"h{node}", ip=f"{ips[node]}/16")
                self.addLink(f"h{node}", f"qb{i + 1}")
            for a, b in pairs:
                self.addLink(f"qb{a + 1}", f"qb{b + 1}")

    datapath = ovs.datapath()
    net = Mininet(topo=Line(), build=False, controller=None, autoSetMacs=True,
                  switch=lambda name, **kw: OVSSwitch(name, datapath=datapath,
                                                      protocols="OpenFlow13", **kw))
    agents: dict[str, BenchAgent] = {}
    ok = False

    def status() -> dict:
        return OperatorClient(ctl.https_url, pki.ca_cert, pki.operator.cert, pki.operator.key,
                              timeout=10).status()

    def wait(cond, what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.2)
        raise RuntimeError(f"bench setup: timed out waiting for {what}")

    try:
        ctl.start().wait_ready(60)
        net.addController("c0", controller=QuSeCRemote, ip="127.0.0.1", port=ctl.of_port)
        net.build()
        net.start()
        wait(lambda: status()["switch_links"] == len(pairs), f"{len(pairs)} LLDP links")
        tx_checksum_off(net.hosts)
        for node in nodes:
            h = net.get(f"h{node}")
            h.cmd("ping -c1 -W1 10.1.255.254")  # announce: the table-miss teaches QuSeC the host
        wait(lambda: status()["core"]["hosts"] == n, f"{n} hosts learned")
        for i, node in enumerate(nodes):
            links = [control_pb2.QkdLinkState(link_id=f"L{a}-{b}", peer_node=nodes[b if a == i else a],
                                              skr_bps=1e7, stored_bits=10**12,
                                              status=control_pb2.LINK_STATUS_ACTIVE)
                     for a, b in pairs if i in (a, b)]
            cert = pki.nodes[node]
            agents[node] = BenchAgent(ctl.grpc_addr, pki.ca_cert, cert.cert, cert.key, node,
                                      ips[node], links)
        for a in agents.values():
            if not a.registered.wait(30):
                raise RuntimeError(f"bench setup: agent {a.node} did not register")
        yield nodes, agents, ctl
        ok = True
    finally:
        for a in agents.values():
            a.close()
        try:
            net.stop()  # QuSeCRemote.stop also ends the controller node's shell
        finally:
            ctl.stop()
            if not ok:
                cleanup()


def measure_latency(hops: int, requests: int, workdir: Path) -> dict:
    with qkd_line_network(hops + 1, False, workdir / "line") as (nodes, agents, _ctl):
        src, dst = agents[nodes[0]], nodes[-1]
        for _ in range(10):  # warm-up: connections, caches
            _, _, pids = src.setup(dst)
            src.release(pids)
        total, app, auth, hop = [], [], [], []
        for _ in range(requests):
            ms, tr, pids = src.setup(dst)
            total.append(ms)
            app.append(float(tr["qusec-app-ms"]))
            auth.append(float(tr["qusec-auth-ms"]))
            hop.append(ms - float(tr["qusec-app-ms"]) - float(tr["qusec-auth-ms"]))
            src.release(pids)
    return {"hops": hops, "samples": requests,
            "setup_p50_ms": percentile(total, 50), "setup_p99_ms": percentile(total, 99),
            "setup_mean_ms": statistics.fmean(total),
            "app_p50_ms": percentile(app, 50), "app_p99_ms": percentile(app, 99),
            "auth_delivery_p50_ms": percentile(auth, 50), "auth_delivery_p99_ms": percentile(auth, 99),
            "gateway_overhead_p50_ms": percentile(hop, 50), "gateway_overhead_p99_ms": percentile(hop, 99)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _pid_of(name: str) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() == name:
                    return int(proc.name)
            except OSError:
                continue
    return 0


def measure_rate(switches: int, duration: float, clients: int, workdir: Path) -> dict:
    with qkd_line_network(switches, True, workdir / "ring") as (nodes, agents, ctl):
        rng = random.Random(7)
        work = [(nodes[i % len(nodes)], rng) for i in range(clients)]
        done: list[int] = [0] * clients
        errors: list[str] = []
        latencies: list[float] = []
        stop_at = [0.0]

        def client(k: int, src: str, r: random.Random) -> None:
            agent = agents[src]
            others = [x for x in nodes if x != src]
            while time.perf_counter() < stop_at[0]:
                try:
                    ms, _, pids = agent.setup(r.choice(others))
                    agent.release(pids)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors.append(str(exc)[:200])
                    continue
                done[k] += 1
                latencies.append(ms)

        for src, _ in work[:2]:  # warm-up
            _, _, pids = agents[src].setup(nodes[len(nodes) // 2])
            agents[src].release(pids)
        procs = {"app": ctl.proc.pid, "gateway": int(ctl.gateway_info()["pid"]),
                 "bench_clients": os.getpid(), "ovs_vswitchd": _pid_of("ovs-vswitchd")}
        cpu0 = {k: _cpu_seconds(pid) for k, pid in procs.items()}
        stop_at[0] = time.perf_counter() + duration
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k, src, random.Random(k)))
                   for k, (src, _) in enumerate(work)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        # Share of one CPU each process used during the load (2 cores are shared by everyone).
        cpu = {f"cpu_{k}": (_cpu_seconds(pid) - cpu0[k]) / elapsed for k, pid in procs.items()}
    return {**cpu, "switches": switches, "clients": clients, "duration_s": elapsed, "setups": sum(done),
            "setups_per_s": sum(done) / elapsed, "errors": len(errors), "first_error": errors[:1],
            "rate_setup_p50_ms": percentile(latencies, 50), "rate_setup_p99_ms": percentile(latencies, 99)}


def measure_core_ceiling(switches: int, samples: int = 200) -> dict:
    """The same setup + release cycle on the pure core alone (no OpenFlow, no gRPC): the
    ceiling the controller process can reach on one core with this core implementation."""
    from quseccontroller.actions import PathRequest
    from quseccontroller.core import QuSeCCore
    from quseccontroller.state import AgentInfo, LinkState
    n, now, core = switches, time.time(), QuSeCCore(path_ttl_s=600)
    for i in range(n):
        core.switch_up(i + 1, [1, 2, 3], now)
    for i in range(n):
        core.link_up((i + 1, 2), ((i + 1) % n + 1, 3), now)
    for i in range(n):
        links = tuple(LinkState(f"L{min(i, k)}-{max(i, k)}", f"n{k}", 1e7, 10**12)
                      for k in ((i + 1) % n, (i - 1) % n))
        ip = f"10.1.0.{i + 1}"
        core.agent_registered(AgentInfo(f"n{i}", f"{ip}:{RELAY_PORT}", data_ip=ip, links=links), now)
        core.host_seen(f"00:00:00:00:01:{i + 1:02x}", ip, i + 1, 1, now)
    rng = random.Random(7)
    t0 = time.perf_counter()
    for _ in range(samples):
        a, b = rng.sample(range(n), 2)
        decision, _ = core.request_path(PathRequest(f"n{a}", f"n{b}"), now)
        for pid in decision.path_ids:
            core.release_path(pid, now)
    per = (time.perf_counter() - t0) / samples
    return {"core_cycle_ms": per * 1000, "core_setups_per_s": 1 / per}


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench setup: needs root (Mininet and Open vSwitch)", file=sys.stderr)
        return 2
    from mininet_topos.launch import ovs
    try:
        ovs.ensure_running()
    except ovs.OvsError as exc:
        print(f"bench setup: {exc}", file=sys.stderr)
        return 2
    from mininet_topos.launch.lock import mininet_lock
    # The shared lock; under ``flock /tmp/qusec-mininet.lock qkdnet bench setup`` the
    # inherited lock is used (taking it again here would wait for ourselves forever).
    with tempfile.TemporaryDirectory(prefix="qusec-bench-setup-") as tmp, mininet_lock(sys.stderr):
        load_before = os.getloadavg()[0]
        lat = measure_latency(args.hops, args.requests, Path(tmp))
        rate = measure_rate(args.switches, args.duration, args.clients, Path(tmp))
    core = measure_core_ceiling(args.switches)
    result = {**lat, **rate, **core, "datapath": ovs.datapath(),
              "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0],
              "targets": {"setup_p50_ms<50": lat["setup_p50_ms"] < 50,
                          "setup_p99_ms<200": lat["setup_p99_ms"] < 200,
                          "setups_per_s>=100": rate["setups_per_s"] >= 100}}
    if not args.no_record:
        _record(result, args)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        from mininet_topos.bench.doc import table
        print(table([{k: v for k, v in result.items() if not isinstance(v, (dict, list))}]))
    return 0


def _record(r: dict, args: argparse.Namespace) -> None:
    from mininet_topos.bench.doc import record, table
    t = r["targets"]
    lat = [{"measure": "path setup (request -> flows confirmed -> authorisations acked -> answer)",
            "p50 ms": r["setup_p50_ms"], "p99 ms": r["setup_p99_ms"]},
           {"measure": "  of which in the app (core + FlowMods + barriers on the switches whose flows changed)",
            "p50 ms": r["app_p50_ms"], "p99 ms": r["app_p99_ms"]},
           {"measure": "  of which authorisation delivery and acks (gateway <-> agents)",
            "p50 ms": r["auth_delivery_p50_ms"], "p99 ms": r["auth_delivery_p99_ms"]},
           {"measure": "  gateway hop itself (gRPC + TLS + bridge + JSON)",
            "p50 ms": r["gateway_overhead_p50_ms"], "p99 ms": r["gateway_overhead_p99_ms"]}]
    body = (f"Real `osken-manager quseccontroller.app` + gateway, OVS {r['datapath']} datapath in "
            f"Mininet, in-process gRPC agents over mutual TLS. Machine load (1-min average) "
            f"{r['load_1min_before']:.1f} before and {r['load_1min_after']:.1f} after the run, on "
            f"{os.cpu_count()} cores shared with other jobs.\n\n"
            f"**Latency**: {r['hops']}-hop path on a line of {r['hops'] + 1} switches, "
            f"{r['samples']} sequential setups (each released before the next).\n\n"
            + table(lat) +
            f"\n**Rate**: {r['clients']} concurrent clients, setup + release between random node pairs "
            f"on a ring of {r['switches']} switches for {r['duration_s']:.1f} s: "
            f"**{r['setups_per_s']:.1f} setups/s** ({r['setups']} setups, {r['errors']} errors; "
            f"setup p50 {r['rate_setup_p50_ms']:.1f} ms, p99 {r['rate_setup_p99_ms']:.1f} ms under load). "
            f"The same setup + release cycle on the pure core alone, same ring, one thread: "
            f"{r['core_cycle_ms']:.2f} ms, i.e. a ceiling of {r['core_setups_per_s']:.0f} setups/s for "
            f"the single-threaded controller process before any OpenFlow or gRPC work. "
            f"CPU used during the load, in cores: app {r['cpu_app']:.2f}, gateway {r['cpu_gateway']:.2f}, "
            f"bench clients {r['cpu_bench_clients']:.2f}, ovs-vswitchd {r['cpu_ovs_vswitchd']:.2f}.\n\n"
            f"Targets: p50 < 50 ms: {'met' if t['setup_p50_ms<50'] else 'NOT met'}; "
            f"p99 < 200 ms: {'met' if t['setup_p99_ms<200'] else 'NOT met'}; "
            f">= 100 setups/s: {'met' if t['setups_per_s>=100'] else 'NOT met'}.\n")
    cmd = "qkdnet bench setup" + (f" --hops {args.hops}" if args.hops != 10 else "") + \
        (f" --switches {args.switches}" if args.switches != 20 else "")
    record("setup", "Relay path setup through QuSeC (Mininet)", body, cmd)
