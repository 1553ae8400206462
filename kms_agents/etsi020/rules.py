"""The life of an external key on each side, and the ack/void rules of GS QKD 020 (pure).

Received (we are the KME that got ``ext_keys``)::

    received --relay ok--> relayed (deliverable to its SAEs) --SAE fetched--> delivered
        \\--relay failed--> failed          any not delivered --void--> voided

Sent (we called ``ext_keys``)::

    sent --ack relayed--> relayed (only now may the key reach an SAE here)
     |   --ack failed / voided--> failed / voided
     |--no ack in time, or a failure other than 400/401--> retried (same IDs and values) ...
     \\--retries spent--> voiding --ack voided / key not present--> voided
                                  --ack failed to void--> failed_to_void

A 400 or 401 means the peer kept nothing: the keys are forgotten at once.
"""
from __future__ import annotations

RX_RECEIVED, RX_RELAYED, RX_FAILED, RX_DELIVERED, RX_VOIDED = "received", "relayed", "failed", "delivered", "voided"
TX_SENT, TX_RELAYED, TX_FAILED, TX_VOIDING, TX_VOIDED, TX_FAILED_TO_VOID = (
    "sent", "relayed", "failed", "voiding", "voided", "failed_to_void")
TX_FINAL = (TX_RELAYED, TX_FAILED, TX_VOIDED, TX_FAILED_TO_VOID)

RETRY, VOID, FORGET = "retry", "void", "forget"


class AckRefused(ValueError):
    """An ack that does not fit the key's state (the caller answers 400)."""


def void_status(rx_state: str | None) -> str:
    """The ack status a void of a received key answers, from the key's state (None: unknown)."""
    if rx_state is None:
        return "key not present"
    if rx_state == RX_DELIVERED:
        return "failed to void"      # an SAE has it already
    return "voided"                  # received, relayed (not fetched), failed, voided: gone now


def tx_after_ack(state: str, status: str) -> str:
    """A sent key's state after the peer acknowledged it with ``status``."""
    if state == TX_SENT:
        new = {"relayed": TX_RELAYED, "failed": TX_FAILED, "voided": TX_VOIDED,
               "key not present": TX_FAILED}.get(status)
    elif state == TX_VOIDING:
        new = {"voided": TX_VOIDED, "key not present": TX_VOIDED, "failed to void": TX_FAILED_TO_VOID,
               "relayed": TX_VOIDING, "failed": TX_VOIDED}.get(status)
    elif state in TX_FINAL:
        new = state                  # a repeated ack (the peer retried): nothing changes
    else:
        new = None
    if new is None:
        raise AckRefused(f"ack {status!r} does not apply to a key in state {state!r}")
    return new


def after_failure(http_status: int | None, attempts: int, max_attempts: int) -> str:
    """What the sender does with keys after an ext_keys call failed (``http_status`` None: no
    answer, a timeout or a broken connection): 400/401 mean the peer kept nothing (forget);
    anything else means the peer may hold them: retry while attempts remain, then void."""
    if http_status in (400, 401):
        return FORGET
    return RETRY if attempts < max_attempts else VOID


def releasable(tx_state: str) -> bool:
    """A sent key may reach an SAE on this side only once the peer acknowledged it ``relayed``."""
    return tx_state == TX_RELAYED
