"""Who may be a switch: over OpenFlow TLS, only a peer whose certificate names role switch.

``osken-manager --ctl-privkey KEY --ctl-cert CERT --ca-certs CA`` serves OpenFlow over TLS and
asks every switch for a certificate of the network's CA; any certificate of that CA would do
for os-ken, so the app checks the role (``urn:qusec:switch:NAME``) before it takes the
datapath: a vKMS, SAE or operator certificate cannot pose as a switch and learn or steer the
flows. A refused connection is closed and logged (``event=switch_refused``) and counted.
Over plain TCP there is nothing to check (the app warns at start).
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from quseccontroller import identity
from quseccontroller.identity import SWITCH, NoIdentity

LOG = logging.getLogger(__name__)


class SwitchGate:
    """Decides once per connection (the verdict is kept on the datapath object)."""

    def __init__(self) -> None:
        self.refused: Counter = Counter()   # reason -> connections refused

    def admit(self, dp: Any) -> bool:
        """Whether ``dp``'s connection may act as a switch; refused ones are closed."""
        verdict = getattr(dp, "qusec_admitted", None)
        if verdict is not None:
            return verdict
        reason, who = self._check(dp)
        dp.qusec_admitted = not reason
        if reason:
            self.refused[reason] += 1
            LOG.warning("event=switch_refused peer=%s dpid=%s identity=%s reason=%s",
                        _peer(dp), f"{dp.id:016x}" if getattr(dp, "id", None) else "-", who, reason)
            dp.close()
        return not reason

    @staticmethod
    def _check(dp: Any) -> tuple[str, str]:
        """('' or the refusal reason, who the certificate names)."""
        sock = getattr(dp, "socket", None)
        if sock is None or not hasattr(sock, "getpeercert"):
            return "", "-"             # plain TCP OpenFlow: no identity to check
        try:
            ident = identity.of_tls_socket(sock)
        except NoIdentity as exc:
            return "no_identity", repr(str(exc))
        return ("" if ident.role == SWITCH else "role"), str(ident)


def _peer(dp: Any) -> str:
    addr = getattr(dp, "address", None)
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else "-"
