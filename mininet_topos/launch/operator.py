"""QuSeC's operator interface as launchers and tools read it: ``/status``, ``/events`` and
``/etsi015`` over HTTPS with mutual TLS and an operator certificate (network.json names both)."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class OperatorError(OSError):
    """QuSeC could not be asked: unreachable, the TLS handshake failed, or it refused the
    request (``status``: the HTTP status, 0 when there was no answer). The message is one line
    naming what went wrong and where."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.message, self.status = message, status

    def __str__(self) -> str:
        return self.message


class OperatorClient:
    """GETs of QuSeC's operator endpoints as the operator whose certificate and key are given."""

    def __init__(self, https_url: str, ca_cert: str | Path, cert: str | Path, key: str | Path,
                 *, timeout: float = 5.0) -> None:
        if not https_url.startswith("https://"):
            raise ValueError(f"QuSeC's operator interface is HTTPS, got {https_url!r}")
        self.url = https_url.rstrip("/")
        self.timeout = timeout
        self.cert = str(cert)
        try:
            self._ctx = ssl.create_default_context(cafile=str(ca_cert))
            self._ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise OperatorError(f"operator certificate {cert} / key {key} or CA {ca_cert} "
                                f"unusable: {exc}") from None

    @classmethod
    def of_network(cls, doc: dict, **kw: Any) -> "OperatorClient":
        """The operator client of a running network (its network.json ``doc``); OperatorError
        when the network has no QuSeC or no operator certificate."""
        https = (doc.get("qusec") or {}).get("https")
        if not https:
            raise OperatorError("the network runs without QuSeC (network.json names no "
                                "qusec.https): nothing to ask")
        op = doc.get("operator") or {}
        if not op.get("cert") or not op.get("key"):
            raise OperatorError("network.json names no operator certificate (operator.cert, "
                                "operator.key): qkdnet pki issues one")
        return cls(https, doc["ca_cert"], op["cert"], op["key"], **kw)

    def get(self, path: str, timeout: float | None = None) -> Any:
        """The JSON body of ``GET path``; OperatorError (an OSError) when QuSeC refuses the
        request, the handshake fails or QuSeC does not answer."""
        url = self.url + path
        try:
            with urllib.request.urlopen(url, timeout=timeout or self.timeout, context=self._ctx) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("message", "")
            except (ValueError, AttributeError, OSError):
                detail = ""
            if exc.code == 403:
                raise OperatorError(f"QuSeC at {self.url} refused the operator certificate "
                                    f"{self.cert}: {detail or exc.reason}", 403) from None
            raise OperatorError(f"QuSeC at {url}: HTTP {exc.code}: {detail or exc.reason}",
                                exc.code) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLError):
                raise OperatorError(f"TLS handshake with QuSeC at {self.url} failed ({reason}); "
                                    f"does it trust the operator certificate {self.cert}?") from None
            raise OperatorError(f"QuSeC unreachable at {self.url}: {reason}") from None
        except (ssl.SSLError, ConnectionError) as exc:
            # QuSeC ends the handshake of a certificate it does not trust by closing the connection
            raise OperatorError(f"QuSeC at {self.url} closed the connection ({exc}); does it trust "
                                f"the operator certificate {self.cert}?") from None
        except TimeoutError:
            raise OperatorError(f"QuSeC at {self.url} did not answer {path} within "
                                f"{timeout or self.timeout:g} s") from None
        except ValueError as exc:
            raise OperatorError(f"QuSeC at {url} answered with no JSON: {exc}") from None

    def status(self, timeout: float | None = None) -> dict:
        """QuSeC's view: switches, LLDP links, and the core's nodes, links, paths, hosts, flows;
        the policy reload state and the recent refusals."""
        return self.get("/status", timeout)

    def events(self, since: int = 0, limit: int | None = None, timeout: float | None = None) -> dict:
        """The events after ``since``: ``{"events": [...], "last_seq": N, "missed": M}``."""
        query = f"?since={int(since)}" + (f"&limit={int(limit)}" if limit is not None else "")
        return self.get("/events" + query, timeout)

    def etsi015(self, timeout: float | None = None) -> dict:
        return self.get("/etsi015", timeout)
