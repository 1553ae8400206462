"""Key-flow simulation: QuSeC's own path computation against a demand matrix, and the LP flow bound."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from mininet_topos.model import Topology
from quseccontroller.actions import PathRequest
from quseccontroller.core import QuSeCCore
from quseccontroller.paths import Constraints, compute
from quseccontroller.policy import PolicyTable, parse
from quseccontroller.state import AgentInfo, LinkState

# Each QKD link's key stream is split into two directional halves (one per initiating end), as
# the vKMS KeySource does; a relay hop a->b draws on a's half. The LP uses the same capacities.
DIRECTION_SHARE = 0.5


def directional_capacity(topo: Topology) -> dict[tuple[str, str, str], float]:
    """(link id, from node, to node) -> bits/s available for hops in that direction."""
    cap = {}
    for link in topo.links:
        cap[(link.id, link.a, link.b)] = link.rate_bps * DIRECTION_SHARE
        cap[(link.id, link.b, link.a)] = link.rate_bps * DIRECTION_SHARE
    return cap


def max_concurrent_flow(topo: Topology, pairs: list[tuple[str, str]]) -> float:
    """Largest lambda such that every pair can get lambda bits/s at once (multi-commodity flow
    LP, commodities aggregated by source, solved with scipy's HiGHS)."""
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    arcs = sorted(directional_capacity(topo).items())
    nodes = sorted(topo.nodes)
    nidx = {n: i for i, n in enumerate(nodes)}
    sources = sorted({s for s, _ in pairs})
    sinks: dict[str, list[str]] = {s: [] for s in sources}
    for s, t in pairs:
        sinks[s].append(t)
    n_arcs, n_nodes = len(arcs), len(nodes)
    n_vars = len(sources) * n_arcs + 1
    lam = n_vars - 1
    rows, cols, vals = [], [], []
    for g, s in enumerate(sources):
        base_row, base_col = g * n_nodes, g * n_arcs
        for a, ((_, u, v), _) in enumerate(arcs):
            rows += [base_row + nidx[u], base_row + nidx[v]]
            cols += [base_col + a, base_col + a]
            vals += [1.0, -1.0]
        demand = {nidx[s]: float(len(sinks[s]))}
        for t in sinks[s]:
            demand[nidx[t]] = demand.get(nidx[t], 0.0) - 1.0
        for i, b in demand.items():
            rows.append(base_row + i)
            cols.append(lam)
            vals.append(-b)
    a_eq = coo_matrix((vals, (rows, cols)), shape=(len(sources) * n_nodes, n_vars)).tocsr()
    urows, ucols = [], []
    for g in range(len(sources)):
        for a in range(n_arcs):
            urows.append(a)
            ucols.append(g * n_arcs + a)
    a_ub = coo_matrix((np.ones(len(urows)), (urows, ucols)), shape=(n_arcs, n_vars)).tocsr()
    b_ub = np.array([c for _, c in arcs])
    cost = np.zeros(n_vars)
    cost[lam] = -1.0
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.zeros(a_eq.shape[0]),
                  bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"flow LP failed: {res.message}")
    return float(res.x[lam])


def core_for(topo: Topology, policy: PolicyTable | None = None, stored_s: float = 0.0,
             now: float = 0.0) -> QuSeCCore:
    """A QuSeCCore with one registered agent per topology node (no switches: loopback)."""
    core = QuSeCCore(policy)
    per_node: dict[str, list[LinkState]] = {n: [] for n in topo.nodes}
    for link in topo.links:
        half = int(link.rate_bps * DIRECTION_SHARE * stored_s)
        per_node[link.a].append(LinkState(link.id, link.b, link.rate_bps, half))
        per_node[link.b].append(LinkState(link.id, link.a, link.rate_bps, half))
    for n, node in sorted(topo.nodes.items()):
        saes = tuple(s.id for s in topo.saes_of(n))
        core.agent_registered(AgentInfo(n, f"127.0.0.1:{1 + len(core.state.agents)}",
                                        trust_level=node.trust, links=tuple(per_node[n]), saes=saes), now)
    return core


@dataclass
class SimResult:
    offered_bits: float = 0.0
    delivered_bits: float = 0.0
    consumed_bits: float = 0.0          # link key burnt by relaying (all hops, all shares)
    drawdown_bits: float = 0.0          # stored key at the window's start minus at its end
    requests: int = 0
    refused: int = 0
    per_pair: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.delivered_bits / self.offered_bits if self.offered_bits else 0.0

    @property
    def cost_per_bit(self) -> float:
        return self.consumed_bits / self.delivered_bits if self.delivered_bits else float("inf")


@dataclass
class SimConfig:
    steps: int = 50
    warmup: int = 10            # steps before measuring (initial stores drain)
    dt: float = 1.0
    chunks: int = 2             # requests per pair per step at the offered rate
    init_s: float = 2.0         # initial store, in seconds of each direction's rate
    cap_s: float = 5.0          # store cap, in seconds of each direction's rate
    backlog_s: float = 5.0      # a pair queues at most this many seconds of demand
    seed: int = 1


def simulate(topo: Topology, pairs: list[tuple[str, str]], demand_bps: float, router: str,
             cfg: SimConfig = SimConfig(), paths: int = 1) -> SimResult:
    """Offer ``demand_bps`` to every pair for ``cfg.steps`` steps; route with QuSeC's core
    (``router="qusec"``: key-aware, reservations, ``paths`` disjoint shares) or a static
    shortest-path baseline (``router="shortest"``: the min-hop path, fixed). Links refill at
    their rate each step; every hop of every share burns the chunk's size in link key."""
    rng = random.Random(cfg.seed)
    cap = directional_capacity(topo)
    store = {h: c * cfg.init_s for h, c in cap.items()}
    cons = {h: 0.0 for h in cap}
    by_link = {(lid, u): (lid, u, v) for (lid, u, v) in cap}
    policy = parse({"default": {"paths": paths}}, "<keyflow>")
    core = core_for(topo, policy)   # the first step's reports carry the stores
    fixed: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    if router == "shortest":
        best_link: dict[frozenset, str] = {}   # of parallel links, the baseline uses the fastest
        for link in sorted(topo.links, key=lambda x: (-x.rate_bps, x.id)):
            best_link.setdefault(frozenset((link.a, link.b)), link.id)
        for s, t in pairs:
            res = compute(core.state, s, t, Constraints(metric="hops", check_key=False))
            hops = zip(res.paths[0], res.paths[0][1:])
            fixed[(s, t)] = [by_link[(best_link[frozenset((u, v))], u)] for u, v in hops]
    backlog = {p: 0.0 for p in pairs}
    chunk = max(1, int(demand_bps * cfg.dt / cfg.chunks))   # whole bits: what is asked is what is burnt
    out = SimResult(per_pair={p: 0.0 for p in pairs})
    for step in range(cfg.steps):
        now = step * cfg.dt
        measuring = step >= cfg.warmup
        if step == cfg.warmup:
            out.drawdown_bits = sum(store.values())
            out.offered_bits += sum(backlog.values())   # demand still queued counts as offered
        used = {h: 0.0 for h in cap}
        if router == "qusec":
            reports: dict[str, list[LinkState]] = {n: [] for n in topo.nodes}
            for (lid, u, v), bits in store.items():
                reports[u].append(LinkState(lid, v, cap[(lid, u, v)] / DIRECTION_SHARE, int(bits),
                                            cons[(lid, u, v)]))
            for n, links in reports.items():
                core.agent_report(n, links, now)
        for p in pairs:
            backlog[p] = min(backlog[p] + demand_bps * cfg.dt, demand_bps * cfg.backlog_s)
            if measuring:
                out.offered_bits += demand_bps * cfg.dt
        granted: list[str] = []
        active = list(pairs)
        rng.shuffle(active)
        while active:
            still = []
            for p in active:
                if backlog[p] < chunk:
                    continue
                if router == "qusec":
                    d, _ = core.request_path(PathRequest(p[0], p[1], key_size_bits=chunk, key_count=1), now)
                    hops_lists = []
                    if d.granted:
                        granted += d.path_ids
                        for pid in d.path_ids:
                            ap = core.paths[pid]
                            hops_lists.append([by_link[(lid, u)] for u, lid in zip(ap.nodes, ap.links)])
                else:
                    hops_lists = [fixed[p]] if all(store[h] >= chunk for h in fixed[p]) else []
                out.requests += 1
                if not hops_lists:
                    out.refused += 1
                    continue
                for hops in hops_lists:
                    for h in hops:
                        store[h] -= chunk
                        used[h] += chunk
                        if store[h] < 0:
                            raise AssertionError(f"over-committed {h}: reservation failed")
                        if measuring:
                            out.consumed_bits += chunk
                backlog[p] -= chunk
                if measuring:
                    out.delivered_bits += chunk
                    out.per_pair[p] += chunk
                still.append(p)
            active = still
        for pid in granted:
            core.release_path(pid, now)
        for h, c in cap.items():
            store[h] = min(c * cfg.cap_s, store[h] + c * cfg.dt)
            cons[h] = 0.5 * cons[h] + 0.5 * used[h] / cfg.dt
    out.drawdown_bits -= sum(store.values())
    return out


def random_pairs(topo: Topology, count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` distinct node pairs (no pair in both directions), seeded."""
    rng = random.Random(seed)
    nodes = sorted(topo.nodes)
    count = min(count, len(nodes) * (len(nodes) - 1) // 2)
    pairs: set[tuple[str, str]] = set()
    while len(pairs) < count:
        a, b = rng.sample(nodes, 2)
        if (b, a) not in pairs:
            pairs.add((a, b))
    return sorted(pairs)


def all_to_all(nodes: list[str]) -> list[tuple[str, str]]:
    nodes = sorted(nodes)
    return [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]]


def shortest_hops(topo: Topology, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Length in hops of each pair's shortest path (what one single path would burn per bit)."""
    core = core_for(topo, stored_s=1.0)
    return {p: len(compute(core.state, p[0], p[1], Constraints(metric="hops", check_key=False)).links[0])
            for p in pairs}


def multipath_capable(topo: Topology, pairs: list[tuple[str, str]], k: int) -> list[tuple[str, str]]:
    """The pairs that have k node-disjoint paths at all (same search as the controller's)."""
    core = core_for(topo, stored_s=1.0)
    return [p for p in pairs
            if len(compute(core.state, p[0], p[1], Constraints(metric="hops", check_key=False), k).paths) == k]


def run_pairs(topo: Topology, pairs: list[tuple[str, str]], cfg: SimConfig) -> dict:
    """Bound, QuSeC and the shortest-path baseline on one demand matrix (offered = the bound)."""
    lam = max_concurrent_flow(topo, pairs)
    qusec = simulate(topo, pairs, lam, "qusec", cfg)
    base = simulate(topo, pairs, lam, "shortest", cfg)
    hops = shortest_hops(topo, pairs)
    single = sum(bits * hops[p] for p, bits in qusec.per_pair.items())
    return {"bound_bps": lam * len(pairs), "per_pair_bps": lam, "ratio": qusec.ratio,
            "key_cost_ratio": qusec.consumed_bits / single if single else 1.0,
            "baseline_ratio": base.ratio, "cost_per_bit": qusec.cost_per_bit,
            "baseline_cost_per_bit": base.cost_per_bit, "requests": qusec.requests,
            "refused": qusec.refused, "drawdown": qusec.drawdown_bits / max(qusec.consumed_bits, 1.0)}


def key_cost(topo: Topology, pairs: list[tuple[str, str]], cfg: SimConfig, k: int = 2,
             load: float = 0.25) -> dict | None:
    """Link key burnt per delivered key bit with k disjoint shares vs one path, same demands
    (pairs with k disjoint paths, at ``load`` x the single-path bound so both deliver)."""
    capable = multipath_capable(topo, pairs, k)
    if not capable:
        return None
    lam = max_concurrent_flow(topo, capable) * load
    single = simulate(topo, capable, lam, "qusec", cfg)
    multi = simulate(topo, capable, lam, "qusec", cfg, paths=k)
    total = multi.cost_per_bit / single.cost_per_bit
    return {"capable_pairs": len(capable), "single_cost_per_bit": single.cost_per_bit,
            "multi_cost_per_bit": multi.cost_per_bit, "total_ratio": total, "per_share_ratio": total / k,
            "single_ratio": single.ratio, "multi_ratio": multi.ratio}
