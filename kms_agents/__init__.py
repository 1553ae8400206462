"""vKMS agent: link KMSs (simulated QKD module or vendor ETSI 014 KMS), ETSI 014/004 key delivery, key relay.

Start with ``kms_agents.agent`` (the ``kms-agent`` process), ``kms_agents.service`` (the ETSI
014 calls, their requests checked by ``kms_agents.keyrequest``), ``kms_agents.delivery`` (keys
made locally, from a direct link or relayed), ``kms_agents.keysource`` /
``kms_agents.qkd_module`` (link key), ``kms_agents.keystore`` (durable state) and
``kms_agents.relay`` (key relay to non-neighbours through QuSeC). The agent reads the
certificates and config it is given; it issues none. docs/agent.md, docs/etsi014.md and
docs/relay.md describe them.
"""
from __future__ import annotations


def version() -> str:
    """The installed ``qusec`` distribution's version (``--version``); "unknown" when not installed."""
    from importlib.metadata import PackageNotFoundError, version as dist_version
    try:
        return dist_version("qusec")
    except PackageNotFoundError:
        return "unknown"
