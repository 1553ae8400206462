"""The end-to-end check every launcher runs: enc_keys at the master's KME, dec_keys at the slave's,
compare. Keys are compared by SHA-256 digest, so a caller that only sees digests (an SAE call
made inside a Mininet host) and one that holds the keys (a local client) share one check."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class KeyCallError(Exception):
    """An enc_keys or dec_keys call failed; ``detail`` is what the caller reports (JSON-able)."""

    def __init__(self, detail: Any) -> None:
        super().__init__(str(detail))
        self.detail = detail


@dataclass(frozen=True)
class KeySeen:
    """One key as an SAE received it: its ID, digest, size and key extension (bytes optional)."""
    key_id: str
    sha256: str
    size_bits: int
    extension: dict = field(default_factory=dict)
    material: bytes | None = None

    @classmethod
    def of(cls, key_id: str, material: bytes, extension: dict | None) -> "KeySeen":
        return cls(key_id, hashlib.sha256(material).hexdigest(), len(material) * 8,
                   dict(extension or {}), material)


def seen(reply: dict) -> list[KeySeen]:
    """The keys an SAE call made in a Mininet host reported (launch/sae.py prints them)."""
    if "error" in reply:
        raise KeyCallError(reply["error"])
    return [KeySeen(k["key_ID"], k["sha256"], k["size"], k.get("extension") or {})
            for k in reply["keys"]]


def key_path(keys: Sequence[KeySeen]) -> list[str]:
    """The relay path a key took (node ids), from its qusec_ key extension."""
    ext = keys[0].extension if keys else {}
    path = ext.get("qusec_path") or (ext.get("qusec_paths") or [[]])[0]
    if isinstance(path, str):
        path = [p for p in path.split(",") if p]
    return list(path)


def check_pair(master: str, slave: str, number: int, enc: Callable[[], list[KeySeen]],
               dec: Callable[[list[str]], list[KeySeen]], *, materials: bool = False) -> dict:
    """Run ``enc()`` (the master's enc_keys) then ``dec(ids)`` (the slave's dec_keys) and compare.

    Returns ``master``, ``slave``, ``keys_requested``, ``keys_matched``, ``key_IDs``, ``path``,
    ``extension``, ``keys`` (per key: ``key_ID``, ``match``, ``size``, ``extension``), ``ok``,
    ``seconds``, and ``error`` when a call failed. ``ok``: every requested key arrived at both
    ends with the same digest. ``materials``: each key entry also carries ``master_key`` and
    ``slave_key`` (bytes, for ``qkdnet key --show-keys`` only)."""
    t = time.monotonic()
    out: dict[str, Any] = {"master": master, "slave": slave, "keys_requested": number,
                           "keys_matched": 0, "key_IDs": [], "path": [], "keys": []}
    try:
        sent = enc()
        out.update(key_IDs=[k.key_id for k in sent], path=key_path(sent),
                   extension=sent[0].extension if sent else {})
        got = {k.key_id: k for k in dec([k.key_id for k in sent])}
    except KeyCallError as exc:
        return {**out, "ok": False, "error": exc.detail, "seconds": round(time.monotonic() - t, 3)}
    out["keys"] = [{"key_ID": k.key_id, "size": k.size_bits, "extension": k.extension,
                    "match": k.key_id in got and got[k.key_id].sha256 == k.sha256} for k in sent]
    if materials:
        for entry, k in zip(out["keys"], sent):
            entry.update(master_key=k.material, slave_key=got[k.key_id].material if k.key_id in got else None)
    out["keys_matched"] = sum(1 for k in out["keys"] if k["match"])
    out["ok"] = out["keys_matched"] == number == len(sent)
    out["seconds"] = round(time.monotonic() - t, 3)
    return out


def client_pair(doc: dict, master: str, slave: str, number: int = 1, size: int | None = None,
                fresh: bool = False, materials: bool = False, slave_doc: dict | None = None) -> dict:
    """:func:`check_pair` with ETSI 014 clients of this process (network.json ``doc``; the
    slave's is ``slave_doc`` when it is another domain's network)."""
    from kms_agents.client import Etsi014Client, Etsi014Error
    from mininet_topos.provision.netinfo import sae_endpoint
    slave_doc = slave_doc or doc
    m_entry, m_node = sae_endpoint(doc, master)
    s_entry, s_node = sae_endpoint(slave_doc, slave)
    mandatory = [{"qusec_security_level": "qkd"}] if fresh else None
    ca = {master: doc["ca_cert"], slave: slave_doc["ca_cert"]}

    def call(entry: dict, node: dict, fn: Callable[[Any], list], sae: str) -> list[KeySeen]:
        try:
            with Etsi014Client(node["etsi014_url"], ca[sae], entry["cert"], entry["key"],
                               kme_node=entry["node"]) as c:
                return [KeySeen.of(k.key_id, k.key, k.key_extension) for k in fn(c)]
        except Etsi014Error as exc:
            raise KeyCallError({"status": exc.status, "body": exc.body, "url": exc.url}) from None
        except OSError as exc:
            raise KeyCallError({"message": f"cannot reach {node['etsi014_url']}: {exc}"}) from None

    result = check_pair(master, slave, number,
                        lambda: call(m_entry, m_node, lambda c: c.enc_keys(slave, number, size,
                                                                           extension_mandatory=mandatory),
                                     master),
                        lambda ids: call(s_entry, s_node, lambda c: c.dec_keys(master, ids), slave),
                        materials=materials)
    result.update(master_node=m_entry["node"], slave_node=s_entry["node"])
    return result


def host_pair(doc: dict, master: str, slave: str, number: int = 1, size: int | None = None,
              slave_doc: dict | None = None) -> dict:
    """:func:`check_pair` for a Mininet network (network.json ``doc``; the slave's is
    ``slave_doc`` when it is another domain's) from the root namespace: each call runs inside
    its SAE's host (``mnexec -a PID``; root), the keys stay there (digests)."""
    import subprocess
    from mininet_topos.launch.sae import call
    from mininet_topos.provision.netinfo import sae_endpoint
    slave_doc = slave_doc or doc
    m_entry, m_node = sae_endpoint(doc, master)
    s_entry, s_node = sae_endpoint(slave_doc, slave)
    docs = {master: doc, slave: slave_doc}

    def in_host(sae: str) -> Callable[[list[str]], subprocess.Popen]:
        pid = docs[sae]["mininet"]["saes"][sae]["pid"]
        return lambda argv: subprocess.Popen(["mnexec", "-a", str(pid), *argv],
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    result = check_pair(
        master, slave, number,
        lambda: seen(call(in_host(master), "enc", m_node["etsi014_url"], doc["ca_cert"],
                          m_entry["cert"], m_entry["key"], slave, number=number, size=size,
                          kme_node=m_entry["node"])),
        lambda ids: seen(call(in_host(slave), "dec", s_node["etsi014_url"], slave_doc["ca_cert"],
                              s_entry["cert"], s_entry["key"], master, key_ids=ids,
                              kme_node=s_entry["node"])))
    result.update(master_node=m_entry["node"], slave_node=s_entry["node"])
    return result


def in_root_namespace() -> bool:
    """True in the machine's own network namespace (not inside a Mininet host)."""
    import os
    try:
        return os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net")
    except OSError:
        return True
