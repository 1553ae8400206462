"""vKMS agent: link KMSs (simulated QKD module or vendor ETSI 014 KMS), ETSI 014/004 key delivery, PKI.

Start with ``kms_agents.agent`` (the ``kms-agent`` process), ``kms_agents.service`` (the key
delivery rules), ``kms_agents.keysource`` / ``kms_agents.qkd_module`` (link key),
``kms_agents.keystore`` (durable state) and ``kms_agents.relay`` (key relay to non-neighbours
through QuSeC). docs/agent.md, docs/etsi014.md and docs/relay.md describe them.
"""
