"""One ETSI 014 call made from inside an SAE's Mininet host, reported as JSON on stdout.

``python -m mininet_topos.launch.sae enc|dec ...`` is what the Mininet launcher runs in an SAE
host (the host's own network namespace reaches the vKMS on the data plane). Keys are reported
as SHA-256 digests: the launcher compares both ends without ever seeing (or printing) a key.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable

CALL_TIMEOUT_S = 30.0


def call(start: Callable[[list[str]], subprocess.Popen], op: str, url: str, ca: str, cert: str,
         key: str, peer: str, *, number: int = 1, size: int | None = None,
         key_ids: list[str] | None = None, fresh: bool = False, kme_node: str | None = None,
         timeout: float = CALL_TIMEOUT_S) -> dict:
    """Run one call of this module in an SAE's host: ``start(argv)`` starts it there (a Mininet
    host's ``popen``, or ``mnexec -a PID``). Returns the JSON it prints ({"keys": [...]}) or
    {"error": {...}} when it fails or times out."""
    argv = [sys.executable, "-m", "mininet_topos.launch.sae", op, "--url", url, "--ca", ca,
            "--cert", cert, "--key", key, "--peer", peer, "--number", str(number)]
    if size:
        argv += ["--size", str(size)]
    for kid in key_ids or []:
        argv += ["--key-id", kid]
    if fresh:
        argv.append("--fresh")
    if kme_node:
        argv += ["--kme-node", kme_node]
    proc = start(argv)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": {"message": f"{op}_keys timed out after {timeout:.0f} s"}}
    try:
        return json.loads(out.decode())
    except ValueError:
        return {"error": {"message": f"{op}_keys failed (exit {proc.returncode}): "
                                     f"{err.decode(errors='replace')[-800:]}"}}


def main(argv: list[str] | None = None) -> int:
    from kms_agents.client import Etsi014Client, Etsi014Error
    p = argparse.ArgumentParser(prog="python -m mininet_topos.launch.sae",
                                description="One ETSI 014 call from an SAE; key IDs and SHA-256 "
                                            "digests as JSON, never keys.")
    p.add_argument("op", choices=("enc", "dec"))
    p.add_argument("--url", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--peer", required=True, help="slave SAE (enc) or master SAE (dec)")
    p.add_argument("--kme-node", default=None, help="the node the KME must be (its certificate's identity)")
    p.add_argument("--number", type=int, default=1)
    p.add_argument("--size", type=int)
    p.add_argument("--key-id", action="append", default=[])
    p.add_argument("--fresh", action="store_true", help="extension_mandatory qusec_security_level=qkd")
    a = p.parse_args(argv)
    mandatory = [{"qusec_security_level": "qkd"}] if a.fresh else None
    try:
        with Etsi014Client(a.url, a.ca, a.cert, a.key, timeout=CALL_TIMEOUT_S, kme_node=a.kme_node) as c:
            keys = (c.enc_keys(a.peer, a.number, a.size, extension_mandatory=mandatory)
                    if a.op == "enc" else c.dec_keys(a.peer, a.key_id))
    except Etsi014Error as exc:
        print(json.dumps({"error": {"status": exc.status, "body": exc.body, "url": exc.url}}))
        return 1
    except OSError as exc:
        print(json.dumps({"error": {"message": f"cannot reach {a.url}: {exc}"}}))
        return 1
    print(json.dumps({"keys": [{"key_ID": k.key_id, "sha256": hashlib.sha256(k.key).hexdigest(),
                                "size": len(k.key) * 8, "extension": k.key_extension}
                               for k in keys]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
