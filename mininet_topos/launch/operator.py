"""QuSeC's operator interface as launchers and tools read it: ``/status`` and ``/etsi015`` over
HTTPS with mutual TLS and an operator certificate (network.json names both)."""
from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any


class OperatorClient:
    """GETs of QuSeC's operator endpoints as the operator whose certificate and key are given."""

    def __init__(self, https_url: str, ca_cert: str | Path, cert: str | Path, key: str | Path,
                 *, timeout: float = 5.0) -> None:
        if not https_url.startswith("https://"):
            raise ValueError(f"QuSeC's operator interface is HTTPS, got {https_url!r}")
        self.url = https_url.rstrip("/")
        self.timeout = timeout
        self._ctx = ssl.create_default_context(cafile=str(ca_cert))
        self._ctx.load_cert_chain(str(cert), str(key))

    @classmethod
    def of_network(cls, doc: dict, **kw: Any) -> "OperatorClient":
        """The operator client of a running network (its network.json ``doc``)."""
        return cls(doc["qusec"]["https"], doc["ca_cert"], doc["operator"]["cert"],
                   doc["operator"]["key"], **kw)

    def get(self, path: str, timeout: float | None = None) -> Any:
        """The JSON body of ``GET path``; OSError (URLError, HTTPError) when QuSeC refuses or is away."""
        with urllib.request.urlopen(self.url + path, timeout=timeout or self.timeout,
                                    context=self._ctx) as r:
            return json.loads(r.read())

    def status(self, timeout: float | None = None) -> dict:
        """QuSeC's view: switches, LLDP links, and the core's nodes, links, paths, hosts, flows."""
        return self.get("/status", timeout)

    def etsi015(self, timeout: float | None = None) -> dict:
        return self.get("/etsi015", timeout)
