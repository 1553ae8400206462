"""``qkdnet bench interdomain``: what crossing domains costs a key, against one domain.

Two networks in one run, as local processes: the three domains of ``beijing_shanghai3`` under
their parent (a key from sae-bj1 on BJ1 to sae-sh1 on SH1: 2 relay hops in the Beijing metro, an
ETSI GS QKD 020 crossing at the Beijing site, 5 hops along the trunk, a crossing at the Shanghai
site, 2 hops in the Shanghai metro: 9 relay hops in all), and a single-domain line of 10 nodes
(9 relay hops). The same ``enc_keys`` requests, one at a time, on each: the p50 difference is
what the two crossings (and the parent's chain) add. The slave fetches every key (``dec_keys``)
so nothing piles up. Also the parent's ``ChooseChain`` latency as a domain QuSeC sees it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from mininet_topos.bench.stats import percentile

TARGET_CROSSING_MS = 10.0


def add_parser(benches: argparse._SubParsersAction) -> None:
    p = benches.add_parser(
        "interdomain", help="enc_keys across three domains (two ETSI 020 crossings) vs one domain, same hops",
        description="Inter-domain enc_keys p50/p99 on beijing_shanghai3 (--local, every domain under its "
                    "parent) against a single-domain line with the same 9 relay hops, in one run; the "
                    "parent's ChooseChain latency.")
    p.add_argument("--requests", type=int, default=60, help="enc_keys requests on each network")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    p.set_defaults(func=run)


def _pair_calls(doc_master: dict, master: str, node: str, doc_slave: dict, slave: str, slave_node: str):
    from kms_agents.client import Etsi014Client
    m, s = doc_master["saes"][master], doc_slave["saes"][slave]
    enc = Etsi014Client(doc_master["nodes"][node]["etsi014_url"], doc_master["ca_cert"], m["cert"], m["key"])
    dec = Etsi014Client(doc_slave["nodes"][slave_node]["etsi014_url"], doc_slave["ca_cert"], s["cert"], s["key"])
    return enc, dec


def timed(enc, dec, master: str, slave: str, n: int, warm: int = 5) -> tuple[list[float], int, str]:
    """(ms of each successful enc_keys, failures, the first failure); every key fetched by the
    slave and compared."""
    from kms_agents.client import Etsi014Error
    out, failed, first = [], 0, ""
    for i in range(n + warm):
        t0 = time.perf_counter()
        try:
            (key,) = enc.enc_keys(slave, number=1, size=256)
        except (Etsi014Error, OSError) as exc:
            failed += i >= warm
            first = first or str(exc)[:200]
            continue
        ms = (time.perf_counter() - t0) * 1000
        (got,) = dec.dec_keys(master, [key.key_id])
        if got.key != key.key:
            raise AssertionError(f"key {key.key_id}: the slave's copy differs")
        if i >= warm:
            out.append(ms)
    return out, failed, first


def _line(n: int):
    from mininet_topos.model import Node, QkdLink, Sae, Topology
    from mininet_topos import keyrate
    nodes = {f"L{i}": Node(f"L{i}") for i in range(n)}
    links = [QkdLink(f"L{i}-L{i + 1}", f"L{i}", f"L{i + 1}", keyrate.rate_from_length(10.0), 10.0)
             for i in range(n - 1)]
    return Topology(name=f"line{n}", nodes=nodes, links=links,
                    saes={"sae-l0": Sae("sae-l0", "L0"), "sae-lz": Sae("sae-lz", f"L{n - 1}")})


def measure(requests: int, say) -> dict:
    from mininet_topos import topology
    from mininet_topos.launch.domains import MultiDomainNetwork
    from mininet_topos.launch.local import LocalNetwork
    from quseccontroller.abstract import Reach
    from quseccontroller.parent.chain import ChainRequest
    from quseccontroller.parent.client import ParentClient
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="qusec-bench-interdomain-") as tmp:
        say("beijing_shanghai3: three domains under their parent")
        with MultiDomainNetwork(topology.load("beijing_shanghai3"), Path(tmp) / "md") as md:
            md.wait_exported()
            bj = json.loads(md.domains["beijing"].network_json.read_text())
            sh = json.loads(md.domains["shanghai"].network_json.read_text())
            enc, dec = _pair_calls(bj, "sae-bj1", "BJ1", sh, "sae-sh1", "SH1")
            res["inter"] = timed(enc, dec, "sae-bj1", "sae-sh1", requests)
            doc = json.loads(md.network_json.read_text())
            d = doc["domains"]["beijing"]

            async def chains() -> list[float]:
                c = ParentClient(doc["parent"]["grpc"], doc["parent"]["ca_cert"], d["parent_cert"], d["parent_key"])
                req = ChainRequest("beijing", "sae-sh1", 256, {"BJ-IW": Reach(1e6, 10**6, 2), "BJ3": Reach(1e6, 10**6, 1)})
                out = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    await c.choose(req)
                    out.append((time.perf_counter() - t0) * 1000)
                await c.close()
                return out
            res["chain"] = asyncio.run(chains())
        say("line10: one domain, the same 9 relay hops")
        with LocalNetwork(_line(10), Path(tmp) / "line") as net:
            doc = json.loads(net.network_json.read_text())
            enc, dec = _pair_calls(doc, "sae-l0", "L0", doc, "sae-lz", "L9")
            res["intra"] = timed(enc, dec, "sae-l0", "sae-lz", requests)
    return res


def run(args: argparse.Namespace) -> int:
    from mininet_topos.bench import doc
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    res = measure(args.requests, say)
    rows = []
    for name, what in (("inter", "beijing_shanghai3: BJ1 -> SH1, 9 relay hops + 2 ETSI 020 crossings, 3 QuSeCs + parent"),
                       ("intra", "line10: L0 -> L9, 9 relay hops, one QuSeC")):
        ms, failed, first = res[name]
        s = sorted(ms)
        rows.append({"network": what, "requests": len(s), "failed": failed, "first_failure": first,
                     "enc_keys_p50_ms": round(percentile(s, 50), 2) if s else None,
                     "enc_keys_p99_ms": round(percentile(s, 99), 2) if s else None})
    chain = sorted(res["chain"])
    extra = (rows[0]["enc_keys_p50_ms"] or 0) - (rows[1]["enc_keys_p50_ms"] or 0)
    verdict = (f"The two crossings add {extra:.1f} ms at p50 ({extra / 2:.1f} ms each): "
               f"{'met' if extra / 2 < TARGET_CROSSING_MS else 'NOT met'} (target: a crossing adds < "
               f"{TARGET_CROSSING_MS:g} ms at p50).")
    out = {"rows": rows, "crossing_ms_p50": round(extra / 2, 2),
           "choose_chain_p50_ms": round(percentile(chain, 50), 2), "choose_chain_p99_ms": round(percentile(chain, 99), 2)}
    if args.json:
        print(json.dumps(out))
    if not args.no_record:
        body = (doc.table(rows) + "\n" + verdict + "\n\n"
                f"The parent's `ChooseChain` from the Beijing QuSeC (mutual TLS, three fresh exports): "
                f"p50 {out['choose_chain_p50_ms']} ms, p99 {out['choose_chain_p99_ms']} ms over {len(chain)} calls.\n\n"
                "Both networks in one run, one request at a time, each key fetched by the slave and compared. "
                "The inter-domain request includes the source QuSeC asking the parent for a chain, each "
                "domain's QuSeC granting its segment, and at each site an ETSI 020 `ext_keys` with its "
                "`relayed` acknowledgement before the relay hop before it is acknowledged.\n")
        doc.record("interdomain", "Interworking: a key across three domains vs one domain", body,
                   f"qkdnet bench interdomain --requests {args.requests}")
    return 0
