"""``qkdnet key``: get keys for two SAEs from the shell (enc_keys at the master's node, dec_keys at the slave's)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("key", help="get keys shared by two SAEs of a running network (ETSI 014)",
                       description="Ask the master SAE's vKMS for keys (enc_keys), fetch them by ID at the "
                                   "slave SAE's vKMS (dec_keys) and check they match. Key bytes are "
                                   "printed only with --show-keys.")
    p.add_argument("master", metavar="MASTER_SAE")
    p.add_argument("slave", metavar="SLAVE_SAE")
    p.add_argument("--network", required=True, type=Path, help="STATE_DIR/network.json of a running network")
    p.add_argument("-n", "--number", type=int, default=1, help="number of keys (default 1)")
    p.add_argument("--size", type=int, default=None, help="key size in bits (default: the KME's key_size)")
    p.add_argument("--show-keys", action="store_true", help="also print the key bytes (hex)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def get_key_pair(doc: dict, master: str, slave: str, number: int = 1, size: int | None = None) -> dict:
    """enc_keys at the master's node, dec_keys at the slave's; returns IDs, both sides' keys and a match flag."""
    from kms_agents.client import Etsi014Client
    from mininet_topos.netinfo import sae_endpoint
    m_entry, m_node = sae_endpoint(doc, master)
    s_entry, s_node = sae_endpoint(doc, slave)
    with Etsi014Client(m_node["etsi014_url"], doc["ca_cert"], m_entry["cert"], m_entry["key"]) as mc:
        keys = mc.enc_keys(slave, number, size)
    with Etsi014Client(s_node["etsi014_url"], doc["ca_cert"], s_entry["cert"], s_entry["key"]) as sc:
        got = sc.dec_keys(master, [k.key_id for k in keys])
    by_id = {k.key_id: k for k in got}
    pairs = [{"key_ID": k.key_id, "match": by_id.get(k.key_id) is not None and by_id[k.key_id].key == k.key,
              "size": len(k.key) * 8, "extension": k.key_extension,
              "master_key": k.key, "slave_key": by_id[k.key_id].key if k.key_id in by_id else b""}
             for k in keys]
    return {"master": master, "slave": slave, "master_node": m_entry["node"], "slave_node": s_entry["node"],
            "keys": pairs, "ok": bool(pairs) and all(p["match"] for p in pairs)}


def run(args: argparse.Namespace) -> int:
    from kms_agents.client import Etsi014Error
    from mininet_topos.netinfo import NetworkInfoError, load_network
    try:
        doc = load_network(args.network)
        result = get_key_pair(doc, args.master, args.slave, args.number, args.size)
    except NetworkInfoError as exc:
        print(f"qkdnet key: {exc}", file=sys.stderr)
        return 2
    except Etsi014Error as exc:
        detail = json.dumps(exc.body) if exc.body else "(no body)"
        print(f"qkdnet key: {exc.url}: HTTP {exc.status} {detail}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"qkdnet key: cannot reach the KME: {exc}", file=sys.stderr)
        return 1
    for p in result["keys"]:
        master_key, slave_key = p.pop("master_key"), p.pop("slave_key")
        if args.show_keys:
            p["key"] = master_key.hex()
            p["slave_key"] = slave_key.hex()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.master} (node {result['master_node']}) -> {args.slave} (node {result['slave_node']}):")
        for p in result["keys"]:
            ext = p.get("extension") or {}
            line = (f"  {p['key_ID']}  {p['size']} bits  {'match' if p['match'] else 'MISMATCH'}"
                    f"  route={ext.get('qusec_route_type', '?')} hops={ext.get('qusec_hops', '?')}")
            if args.show_keys:
                line += f"  {p['key']}"
            print(line)
        print("all keys match" if result["ok"] else "KEYS DO NOT MATCH")
    return 0 if result["ok"] else 1
