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


def run(args: argparse.Namespace) -> int:
    import os

    from mininet_topos.launch.keypair import client_pair, host_pair, in_root_namespace
    from mininet_topos.provision.netinfo import NetworkInfoError, load_network
    try:
        doc = load_network(args.network)
        if doc.get("mode") == "mininet" and in_root_namespace():
            # SAE hosts reach the vKMSs on the emulated data plane, which the root namespace
            # does not: make each call inside its SAE's host (digests come back, never keys).
            if os.geteuid() != 0:
                print("qkdnet key: on a Mininet network the calls run inside the SAE hosts: run "
                      "as root (or inside a host: mnexec -a PID qkdnet key ...; network.json "
                      "lists each host's pid)", file=sys.stderr)
                return 2
            if args.show_keys:
                print("qkdnet key: --show-keys: keys never leave the SAE hosts; run it inside the "
                      f"master's host: mnexec -a {doc['mininet']['saes'][args.master]['pid']} "
                      f"{sys.argv[0]} key --network {args.network} {args.master} {args.slave} "
                      "--show-keys", file=sys.stderr)
                return 2
            result = host_pair(doc, args.master, args.slave, args.number, args.size)
        else:
            result = client_pair(doc, args.master, args.slave, args.number, args.size, materials=True)
    except (NetworkInfoError, KeyError) as exc:
        print(f"qkdnet key: {exc}", file=sys.stderr)
        return 2
    error = result.get("error")
    if error is not None:
        if "status" in error:
            detail = json.dumps(error["body"]) if error.get("body") else "(no body)"
            print(f"qkdnet key: {error['url']}: HTTP {error['status']} {detail}", file=sys.stderr)
        else:
            print(f"qkdnet key: {error['message']}", file=sys.stderr)
        return 1
    for p in result["keys"]:
        master_key, slave_key = p.pop("master_key", None), p.pop("slave_key", None)
        if args.show_keys and master_key is not None:
            p["key"] = master_key.hex()
            p["slave_key"] = slave_key.hex() if slave_key is not None else ""
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
