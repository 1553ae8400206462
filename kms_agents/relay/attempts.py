"""Relay attempts in time: the first attempt's deadline, each hop's share of it, the one retry.

A relay is one attempt along the granted path, bounded by a deadline well under the path
deadline (the hop timeout), so a hop whose connection stalls (a classical link went down
under it and TCP backs off while QuSeC moves the flows) costs the SAE a second, not ten.
The deadline travels in the sealed header (``EXT_BUDGET``: what the sender allows this
hop, in ms), and every node forwards with what is left of it minus a fixed margin (the
attempt was given one margin per hop), so the hop that stalled is the first to time out: it drops its connection to the next hop and the
failure reaches the source while the source's own call still runs. The source then
retries once, on a path QuSeC grants afresh, with fresh keys under fresh IDs (the first
attempt is voided over its own path, so nothing of it can be delivered twice or mixed with
the retry), over fresh connections, within the same attempt deadline: the SAE has its key,
or a 503 naming the failure, within two attempts (under two seconds for small requests).

Plain functions of their inputs (times in seconds, passed in): no clock, no sockets.
"""
from __future__ import annotations

from kms_agents.relay.messages import Reason

EXT_BUDGET = "qusec_budget_ms"   # header extension: the time the sender allows this hop
ATTEMPT_S = 0.6                  # an attempt's deadline, before its payload's share and the hops' margins
ATTEMPT_BYTES_PER_S = 1_000_000  # payload a slow hop still moves in a second (bulk messages)
HOP_MARGIN_S = 0.05              # each hop forwards with this much less than it got (its own work
                                 # before and after the call: link key, fsync, seal); an attempt
                                 # gets this much more per hop, so a long path's last hop still
                                 # has about ATTEMPT_S
MIN_HOP_S = 0.05                 # a hop with less than this left does not start
VOID_S = ATTEMPT_S               # the longest a void (best effort, after a failure) waits per hop

# Failures a fresh path or connection may cure: the path moved or went (DENIED, UNKNOWN_NODE),
# or a hop's connection stalled or broke (TIMEOUT, UNREACHABLE: that hop dropped its connection,
# so the retry opens a new one over the flows QuSeC installs now, even on the same relay nodes).
RETRY_REASONS = (Reason.DENIED, Reason.UNKNOWN_NODE, Reason.UNREACHABLE, Reason.TIMEOUT)


def attempt_s(path_deadline_s: float, payload_bytes: int, hops: int = 1) -> float:
    """One attempt's deadline: ``ATTEMPT_S`` plus its payload's time at a slow hop's pace plus
    each hop's margin, at most half the path deadline (two attempts never take longer than the
    path deadline)."""
    return min(path_deadline_s / 2,
               ATTEMPT_S + payload_bytes / ATTEMPT_BYTES_PER_S + HOP_MARGIN_S * max(1, hops))


def stalled(reason: Reason) -> bool:
    """A hop's connection stalled or broke (rather than a node refusing): voids over that path
    are best left to the background."""
    return reason in (Reason.TIMEOUT, Reason.UNREACHABLE)


def should_retry(reason: Reason) -> bool:
    """Whether a failed first attempt is tried once more on the path QuSeC granted afresh.

    A transport failure (TIMEOUT, UNREACHABLE) is retried even over the same relay nodes: the
    classical route under them may have moved, and the hop that failed reconnects. A
    refusal by a hop (DENIED, UNKNOWN_NODE) is retried because the fresh grant carries fresh
    authorisations. Anything else (no key, MAC, duplicate, ...) would fail the same way.
    """
    return reason in RETRY_REASONS


def forward_s(budget_s: float | None, elapsed_s: float, hop_timeout_s: float) -> float:
    """The deadline a node gives its next hop: what the previous hop allowed it (``budget_s``;
    None from a sender that sends none: the hop timeout), less the time spent here and a
    margin, never more than the hop timeout. <= 0: too late to forward at all."""
    if budget_s is None:
        return hop_timeout_s
    left = budget_s - elapsed_s
    return min(hop_timeout_s, left - HOP_MARGIN_S)


def budget_of(extensions: dict[str, str]) -> float | None:
    """The budget a header's extensions carry (seconds), None when absent or not a number."""
    raw = extensions.get(EXT_BUDGET)
    if raw is None:
        return None
    try:
        ms = int(raw)
    except ValueError:
        return None
    return ms / 1000 if ms > 0 else None


def with_budget(extensions: tuple[tuple[str, str], ...] | list, timeout_s: float
                ) -> tuple[tuple[str, str], ...]:
    """Extensions with this hop's budget (the sender's timeout) in place of the one received."""
    kept = [(k, v) for k, v in extensions if k != EXT_BUDGET]
    return tuple(sorted(kept + [(EXT_BUDGET, str(max(1, int(timeout_s * 1000))))]))
