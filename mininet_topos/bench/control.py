"""``qkdnet bench control``: QuSeC's control plane under thousands of agents.

The real controller (``osken-manager quseccontroller.app`` and its gateway, mutual TLS, an
inventory of every node) and N simulated agents that speak the real control protocol: each
opens its own mutual-TLS control stream with its own node certificate, registers with its
links, sends a link report at the interval QuSeC sets, and acknowledges every authorisation at
once. They run in a few worker processes (``python -m mininet_topos.bench.control --worker
SPEC``) on asyncio, so one agent costs a coroutine and a TCP connection, not a process.

Per N (a seeded synthetic mesh of N nodes) it measures: the time until every agent is
registered; during a window of full report load, reports sent by the agents against reports the
app took (``qusec_reports_total``: a growing gap is a backlog), path requests between random
pairs (p50/p99 from the requesting agent's side: path computed, authorisations pushed to every
node on the path and acked), the gateway's share of a setup beyond the app's (the authorisation
round trip), and the CPU and resident memory of the app and the gateway processes.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mininet_topos.bench.stats import percentile

WORKERS = 3
DEFAULT_NODES = (100, 1000, 5000, 10000)
TARGETS = {"registered_s": 60.0, "path_p50_ms": 25.0, "path_p99_ms": 100.0, "rss_mib": 2048.0}


def add_parser(benches: argparse._SubParsersAction) -> None:
    p = benches.add_parser(
        "control", help="QuSeC under N simulated agents (real controller, real control protocol)",
        description="QuSeC's control plane under N simulated agents on seeded synthetic meshes: time to "
                    "register all, report load processed against sent, path request p50/p99 under that "
                    "load, CPU and memory of the app and the gateway.")
    p.add_argument("--nodes", type=int, nargs="+", default=list(DEFAULT_NODES), metavar="N",
                   help=f"mesh sizes (default: {' '.join(map(str, DEFAULT_NODES))})")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--window", type=float, default=20.0, help="seconds of measured full load per N")
    p.add_argument("--path-rate", type=float, default=20.0, help="path requests per second in the window")
    p.add_argument("--workers", type=int, default=WORKERS, help="agent worker processes")
    p.add_argument("--register-timeout", type=float, default=180.0,
                   help="give up on an N whose agents are not all registered by then (s)")
    p.add_argument("--baseline", type=Path, metavar="FILE",
                   help="the --json output of a run of other code (e.g. a git worktree of an older "
                        "commit) in the same session: recorded and plotted beside this run's")
    p.add_argument("--baseline-label", default="before", metavar="TEXT",
                   help="what the baseline ran (e.g. the commit)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- the agents


async def _agent(node: dict, stub_for, st: dict, go: asyncio.Event, end: list) -> None:
    """One simulated agent: register, report every interval, ack authorisations."""
    import grpc

    from quseccontroller.proto import control_pb2 as pb
    stub = stub_for(node)
    links = [pb.QkdLinkState(link_id=x["id"], peer_node=x["peer"], skr_bps=x["skr"],
                             stored_bits=10**7, status=pb.LINK_STATUS_ACTIVE) for x in node["links"]]
    out = asyncio.Queue()
    await out.put(pb.AgentMessage(register=pb.Register(
        node_id=node["id"], relay_addr="127.0.0.1:7000", trust_level=3, links=links,
        saes=node["saes"], agent_version="bench-control")))

    async def messages(queue: asyncio.Queue):
        # its own stream's queue: a stream given up must not take the Register of the next one
        while True:
            msg = await queue.get()
            if msg is None:
                return
            yield msg

    interval = 2.0
    registered = False
    while time.time() < end[0]:
        call = stub.Connect(messages(out))
        try:
            async for msg in call:
                kind = msg.WhichOneof("body")
                if kind == "registered":
                    registered = True
                    st["registered"].append(time.time())
                    interval = msg.registered.report_interval_ms / 1000 or 2.0
                    asyncio.ensure_future(_reporter(out, links, interval, st, end))
                elif kind == "authorise":
                    await out.put(pb.AgentMessage(auth_ack=pb.AuthorisationAck(path_id=msg.authorise.path_id)))
            return
        except grpc.aio.AioRpcError as exc:
            if registered:
                if time.time() < end[0]:
                    st["errors"].append(f"stream {node['id']}: {exc.code().name}: {exc.details()}")
                return
            # not registered yet (a refused or timed-out stream): again after a back-off, as the
            # agent does; the Register goes first on the new stream
            call.cancel()
            st["retries"] += 1
            st["retry_codes"][exc.code().name] = st["retry_codes"].get(exc.code().name, 0) + 1
            if st["retries"] <= 3:
                st["errors"].append(f"stream {node['id']} (retried): {exc.code().name}: {exc.details()}")
            await asyncio.sleep(0.5 + random.random() * 1.5)
            out = asyncio.Queue()
            await out.put(pb.AgentMessage(register=pb.Register(
                node_id=node["id"], relay_addr="127.0.0.1:7000", trust_level=3, links=links,
                saes=node["saes"], agent_version="bench-control")))


async def _reporter(out: asyncio.Queue, links: list, interval: float, st: dict, end: list) -> None:
    from quseccontroller.proto import control_pb2 as pb
    await asyncio.sleep(random.random() * interval)   # agents' reports spread over the interval
    while time.time() < end[0]:
        await out.put(pb.AgentMessage(report=pb.LinkReport(links=links)))
        st["reports"].append(time.time())
        await asyncio.sleep(interval)
    await out.put(None)


async def _paths(spec: dict, stubs: dict, st: dict, t_from: float, t_to: float) -> None:
    """Path requests at the worker's share of the rate, from its agents to random nodes."""
    import grpc

    from quseccontroller.proto import control_pb2 as pb
    rng = random.Random(spec["seed"])
    mine = [n["id"] for n in spec["nodes"]]
    everyone = spec["all_nodes"]
    period = 1.0 / spec["path_rate"] if spec["path_rate"] > 0 else None
    await asyncio.sleep(max(0.0, t_from - time.time()))

    async def one(src: str, dst: str) -> None:
        t0 = time.perf_counter()
        try:
            reply = await stubs[src].RequestPath(pb.PathRequest(src_node=src, dst_node=dst, key_size_bits=256,
                                                                key_count=1), timeout=30)
            st["paths"].append((time.perf_counter() - t0) * 1000)
            st["hops"].extend(len(p.hops) for p in reply.paths)
            for p in reply.paths:
                await stubs[src].ReleasePath(pb.ReleaseRequest(path_id=p.path_id), timeout=30)
        except grpc.aio.AioRpcError as exc:
            st["path_errors"].append(f"{exc.code().name}: {exc.details()}"[:200])

    tasks = []
    while period is not None and time.time() < t_to:
        src = rng.choice(mine)
        dst = rng.choice(everyone)
        if dst != src:
            tasks.append(asyncio.ensure_future(one(src, dst)))
        await asyncio.sleep(period)
    if tasks:
        await asyncio.wait(tasks, timeout=35)


async def _lag(st: dict, t_from: float, t_to: float, period: float = 0.02) -> None:
    """How late the worker's event loop runs a timer during the window (an ack waits as long)."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, t_from - time.time()))
    while time.time() < t_to:
        t = loop.time()
        await asyncio.sleep(period)
        st["lag"].append((loop.time() - t - period) * 1000)


async def _worker(spec: dict) -> dict:
    import grpc

    from quseccontroller.proto import control_pb2_grpc
    ca = Path(spec["ca"]).read_bytes()
    stubs: dict = {}

    def stub_for(node: dict):
        creds = grpc.ssl_channel_credentials(ca, Path(node["key"]).read_bytes(), Path(node["cert"]).read_bytes())
        ch = grpc.aio.secure_channel(spec["addr"], creds)
        stubs[node["id"]] = control_pb2_grpc.QuSeCControlStub(ch)
        return stubs[node["id"]]

    st: dict = {"registered": [], "reports": [], "paths": [], "path_errors": [], "errors": [], "retries": 0, "retry_codes": {},
                "hops": [], "lag": []}
    end = [float("inf")]
    go = asyncio.Event()
    t0 = time.time()
    agents = [asyncio.ensure_future(_agent(n, stub_for, st, go, end)) for n in spec["nodes"]]
    ready = Path(spec["ready"])
    gofile = Path(spec["go"])
    while len(st["registered"]) < len(spec["nodes"]) and time.time() - t0 < spec["register_timeout"]:
        await asyncio.sleep(0.1)
    ready.write_text(json.dumps({"registered": len(st["registered"]), "t0": t0,
                                 "last": max(st["registered"], default=t0)}))
    while not gofile.exists():
        await asyncio.sleep(0.1)
    window = json.loads(gofile.read_text())
    end[0] = window["end"] + 1.0
    lag = asyncio.ensure_future(_lag(st, window["start"], window["end"]))
    await _paths(spec, stubs, st, window["start"], window["end"])
    await lag
    await asyncio.sleep(max(0.0, end[0] - time.time()))
    for a in agents:
        a.cancel()
    await asyncio.gather(*agents, return_exceptions=True)
    in_window = [t for t in st["reports"] if window["start"] <= t <= window["end"]]
    return {"registered": len(st["registered"]), "t0": t0, "last_registered": max(st["registered"], default=t0),
            "reports_in_window": len(in_window), "paths_ms": st["paths"], "path_errors": st["path_errors"],
            "errors": st["errors"][:20], "retries": st["retries"], "retry_codes": st["retry_codes"],
            "hops": st["hops"], "lag_ms": st["lag"]}


# ------------------------------------------------------------------------------- measuring


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpus(app_pid: int, gw_pid: int, workers: list[subprocess.Popen]) -> tuple[float, float, float]:
    """CPU seconds so far of the app, the gateway and the agents' workers together."""
    return _proc_cpu_s(app_pid), _proc_cpu_s(gw_pid), sum(_proc_cpu_s(p.pid) for p in workers)


def _scrape(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if not s.labels:
                out[s.name] = s.value
    return out


def measure(n: int, seed: int, window: float, path_rate: float, workers: int, register_timeout: float,
            workdir: Path, say) -> dict:
    from mininet_topos import synthetic
    from mininet_topos.launch.controller import Controller
    from mininet_topos.provision import inventory
    from mininet_topos.provision.pki import build_pki

    topo = synthetic.mesh(n, seed)
    t = time.monotonic()
    pki = build_pki(topo, workdir / "pki")
    say(f"  N={n}: {len(topo.links)} links; PKI in {time.monotonic() - t:.1f} s")
    inv = inventory.write(topo, workdir / "inventory.toml")
    ctl = Controller(workdir / "qusec", ca_cert=pki.ca_cert, cert=pki.qusec_cert, key=pki.qusec_key,
                     inventory=inv, observe_links=False, path_ttl=600, max_streams=n + 100)
    row: dict = {"nodes": n, "links": len(topo.links)}
    procs: list[subprocess.Popen] = []
    try:
        ctl.start()
        ctl.wait_ready(120)
        gw_pid = json.loads((ctl.state_dir / "gateway.json").read_text())["pid"]
        app_pid = ctl.proc.pid
        nodes = []
        for node in topo.nodes.values():
            nodes.append({"id": node.id, "cert": pki.nodes[node.id].cert, "key": pki.nodes[node.id].key,
                          "saes": [s.id for s in topo.saes_of(node.id)],
                          "links": [{"id": lk.id, "peer": lk.peer(node.id), "skr": lk.rate_bps}
                                    for lk in topo.links_of(node.id)]})
        shards = [nodes[i::workers] for i in range(workers)]
        ready = [workdir / f"ready{i}.json" for i in range(workers)]
        gofile = workdir / "go.json"
        t_start = time.time()
        for i, shard in enumerate(shards):
            spec = {"addr": ctl.grpc_addr, "ca": pki.ca_cert, "nodes": shard, "all_nodes": list(topo.nodes),
                    "path_rate": path_rate / workers, "seed": seed * 100 + i, "ready": str(ready[i]),
                    "go": str(gofile), "register_timeout": register_timeout}
            spec_file = workdir / f"worker{i}.json"
            spec_file.write_text(json.dumps(spec))
            procs.append(subprocess.Popen([sys.executable, "-m", "mininet_topos.bench.control", "--worker",
                                           str(spec_file), str(workdir / f"result{i}.json")],
                                          stdout=subprocess.DEVNULL, stderr=open(workdir / f"worker{i}.log", "w")))
        deadline = time.time() + register_timeout + 30
        while not all(r.exists() for r in ready):
            if time.time() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"workers did not report readiness (logs: {workdir}/worker*.log)")
            time.sleep(0.2)
        ups = [json.loads(r.read_text()) for r in ready]
        registered = sum(u["registered"] for u in ups)
        row["registered"] = registered
        row["registered_s"] = round(max(u["last"] for u in ups) - t_start, 2)
        say(f"  N={n}: {registered}/{n} registered in {row['registered_s']} s")
        time.sleep(min(5.0, window / 4))   # every agent's report cycle running
        w_start = time.time() + 0.5
        w_end = w_start + window
        gofile.write_text(json.dumps({"start": w_start, "end": w_end}))
        time.sleep(max(0.0, w_start - time.time()))
        m0, cpu0 = _scrape(ctl.http_url), _cpus(app_pid, gw_pid, procs)
        time.sleep(max(0.0, w_end - time.time()))
        m1, cpu1 = _scrape(ctl.http_url), _cpus(app_pid, gw_pid, procs)
        rss = _proc_rss_mib(app_pid) + _proc_rss_mib(gw_pid)
        for p in procs:
            p.wait(120)
        results = [json.loads((workdir / f"result{i}.json").read_text()) for i in range(workers)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        ctl.stop()
    sent = sum(r["reports_in_window"] for r in results)
    done = m1.get("qusec_reports_total", 0) - m0.get("qusec_reports_total", 0)
    replaced = m1.get("qusec_reports_replaced_total", 0) - m0.get("qusec_reports_replaced_total", 0)
    paths = sorted(x for r in results for x in r["paths_ms"])
    hops = sorted(x for r in results for x in r["hops"])
    errors = [e for r in results for e in r["path_errors"]]
    setups = m1.get("qusec_path_setup_seconds_count", 0) - m0.get("qusec_path_setup_seconds_count", 0)
    gw_s = (m1.get("qusec_path_setup_seconds_sum", 0) - m0.get("qusec_path_setup_seconds_sum", 0))
    app_s = (m1.get("qusec_path_setup_app_seconds_sum", 0) - m0.get("qusec_path_setup_app_seconds_sum", 0))
    auth_s, auth_n, lag_s, lag_n = (m1.get(k, 0) - m0.get(k, 0) for k in (
        "qusec_path_setup_auth_seconds_sum", "qusec_path_setup_auth_seconds_count",
        "qusec_gateway_loop_lag_seconds_sum", "qusec_gateway_loop_lag_seconds_count"))
    row.update({
        "reports_sent_per_s": round(sent / window, 1),
        "reports_done_per_s": round(done / window, 1),
        "reports_replaced_per_s": round(replaced / window, 1),
        # neither taken by the app nor replaced by a newer one in the window: waiting
        "report_backlog": round(max(0.0, 1 - (done + replaced) / sent), 3) if sent else 0.0,
        "paths": len(paths), "path_errors": len(errors),
        "path_p50_ms": round(percentile(paths, 50), 2) if paths else None,
        "path_p99_ms": round(percentile(paths, 99), 2) if paths else None,
        "path_hops_p50": percentile(hops, 50) if hops else None,
        # the authorisations' fan-out (pushes and acks), measured by the gateway; where the
        # gateway does not count it (older code) the setup time beyond the app's
        "auth_roundtrip_ms": round((auth_s if auth_n else gw_s - app_s) / setups * 1000, 2) if setups else None,
        # the rest of a setup in the gateway: the bridge, the wait for the app behind other calls
        "app_wait_ms": round((gw_s - app_s - auth_s) / setups * 1000, 2) if setups and auth_n else None,
        "gateway_lag_ms": round(lag_s / lag_n * 1000, 2) if lag_n else None,
        "app_cpu_pct": round((cpu1[0] - cpu0[0]) / window * 100, 1),
        "gateway_cpu_pct": round((cpu1[1] - cpu0[1]) / window * 100, 1),
        # the simulated agents' worker processes, on the same cores as QuSeC
        "agents_cpu_pct": round((cpu1[2] - cpu0[2]) / window * 100, 1),
        # the agents' worker loops: how late a timer ran in the window (every ack waits as long)
        "agents_lag_p99_ms": round(percentile(lag, 99), 1) if (lag := sorted(
            x for r in results for x in r.get("lag_ms", ()))) else None,
        "rss_mib": round(rss, 1),
        "stream_retries": sum(r["retries"] for r in results),
        "retry_codes": {c: sum(r["retry_codes"].get(c, 0) for r in results)
                        for c in sorted({c for r in results for c in r["retry_codes"]})},
        "first_error": ([e for r in results for e in r["errors"]] + errors + [""])[0],
    })
    return row


def verdicts(row: dict) -> list[str]:
    """What a row misses of the targets (at the largest N the issue sets them for)."""
    out = []
    if row.get("registered", 0) < row["nodes"]:
        out.append(f"only {row.get('registered', 0)}/{row['nodes']} registered")
    if row.get("registered_s", 0) > TARGETS["registered_s"]:
        out.append(f"registered in {row['registered_s']} s > {TARGETS['registered_s']:.0f} s")
    if row.get("report_backlog", 0) > 0.05:
        out.append(f"report backlog {row['report_backlog']:.0%}")
    for k in ("path_p50_ms", "path_p99_ms"):
        if row.get(k) is not None and row[k] > TARGETS[k]:
            out.append(f"{k} {row[k]} > {TARGETS[k]:.0f}")
    if row.get("rss_mib", 0) > TARGETS["rss_mib"]:
        out.append(f"memory {row['rss_mib']} MiB > 2 GiB")
    return out


def plot(rows: list[dict], out: Path, baseline: list[dict] = (), baseline_label: str = "before") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ns = [r["nodes"] for r in rows]
    figs = [("registered_s", "time to register all (s)"), ("reports_done_per_s", "reports taken / s"),
            ("path_p50_ms", "path p50 (ms)"), ("path_p99_ms", "path p99 (ms)"),
            ("app_cpu_pct", "app CPU (%)"), ("rss_mib", "app + gateway RSS (MiB)")]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    def values(rs: list[dict], key: str) -> list[float]:
        return [r.get(key) if r.get(key) is not None else float("nan") for r in rs]
    for ax, (key, title) in zip(axes.flat, figs):
        ax.plot(ns, values(rows, key), "o-", label="this run" if baseline else None)
        if baseline:
            ax.plot([r["nodes"] for r in baseline], values(baseline, key), "s:", color="grey",
                    label=baseline_label)
        if key == "reports_done_per_s":
            ax.plot(ns, [r.get("reports_sent_per_s") for r in rows], "x--", label="sent")
        if key == "reports_done_per_s" or (baseline and ax is axes.flat[0]):
            ax.legend()
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("nodes")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def run(args: argparse.Namespace) -> int:
    from mininet_topos.bench import doc
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    rows = []
    for i, n in enumerate(args.nodes, 1):
        say(f"[{i}/{len(args.nodes)}] {n} simulated agents")
        with tempfile.TemporaryDirectory(prefix=f"qusec-bench-control-{n}-") as tmp:
            try:
                rows.append(measure(n, args.seed, args.window, args.path_rate, args.workers,
                                    args.register_timeout, Path(tmp), say))
            except Exception as exc:  # noqa: BLE001 - a size that breaks is a result
                rows.append({"nodes": n, "first_error": f"{type(exc).__name__}: {exc}"[:200]})
        say(f"  {rows[-1]}")
    if args.json:
        print(json.dumps({"rows": rows}))
    if args.no_record:
        return 0
    before = json.loads(args.baseline.read_text())["rows"] if args.baseline else []
    png = plot([r for r in rows if "registered_s" in r], doc.DOC.parent / "img" / "bench-control.png",
               [r for r in before if "registered_s" in r], args.baseline_label)
    cols = ["nodes", "links", "registered", "registered_s", "reports_sent_per_s", "reports_done_per_s",
            "reports_replaced_per_s", "report_backlog", "paths", "path_errors", "path_p50_ms", "path_p99_ms", "path_hops_p50", "auth_roundtrip_ms", "app_wait_ms", "gateway_lag_ms",
            "app_cpu_pct", "gateway_cpu_pct", "agents_cpu_pct", "agents_lag_p99_ms", "rss_mib", "stream_retries"]
    misses = [f"* N={r['nodes']}: " + "; ".join(v) for r in rows if (v := verdicts(r))]
    errors = [f"* N={r['nodes']}: first error: `{r['first_error']}`" for r in rows if r.get("first_error")]
    body = (doc.table(rows, cols) + "\n"
            + (f"Before, {args.baseline_label} (run from its own checkout in the same session, just "
               f"before this one; `--baseline`):\n\n" + doc.table(before, cols) + "\n" if before else "")
            + f"![QuSeC under N simulated agents](img/{png.name})\n\n"
            f"Each N: a seeded synthetic mesh, one simulated agent per node (its own certificate and "
            f"mutual-TLS control stream, {args.workers} worker processes), reports at QuSeC's interval, "
            f"{args.path_rate:g} path requests/s between random pairs during a {args.window:g} s window. "
            "`reports_replaced_per_s`: reports a newer one from the same agent replaced while the app "
            "was busy (link levels are state: the gateway keeps the newest, the stream is never held "
            "up). `report_backlog`: the share of reports sent in the window neither taken nor "
            "replaced in it (waiting). "
            "`auth_roundtrip_ms`: mean time of the gateway pushing the authorisations to every node "
            "on the path and collecting the acks (`qusec_path_setup_auth_seconds`; `path_hops_p50`: the "
            "nodes on a granted path, each one authorisation to push and one ack to wait for); "
            "`app_wait_ms`: the rest of a setup in the gateway beyond the app's own time (the bridge, "
            "waiting behind other app calls); `gateway_lag_ms`: how late the gateway's loop ran a "
            "timer, on average (`qusec_gateway_loop_lag_seconds`); `agents_lag_p99_ms`: the same for "
            "the simulated agents' worker loops, p99 (every ack waits as long). CPU: "
            "share of one core over the window (`agents_cpu_pct`: the simulated agents' worker "
            "processes, on the same two cores as QuSeC). Targets at 10,000 nodes: all registered within 60 s, no backlog, "
            "path p50 < 25 ms, p99 < 100 ms, memory < 2 GiB.\n\n"
            + ("Missed:\n" + "\n".join(misses) + "\n\n" if misses else "Every target met.\n\n")
            + ("\n".join(errors) + "\n" if errors else ""))
    doc.record("control", "Control plane: QuSeC under N simulated agents", body,
               f"qkdnet bench control --nodes {' '.join(map(str, args.nodes))} --window {args.window:g}"
               + (f" --baseline {args.baseline.name} --baseline-label {shlex.quote(args.baseline_label)}"
                  if before else ""))
    return 0


def _worker_main(spec_file: str, result_file: str) -> int:
    spec = json.loads(Path(spec_file).read_text())
    result = asyncio.run(_worker(spec))
    Path(result_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2], sys.argv[3]))
    print("usage: qkdnet bench control (this module's --worker mode is for its own workers)", file=sys.stderr)
    sys.exit(2)
