"""Hop-by-hop key relay between vKMSs (docs/relay.md).

The core works on plain dataclasses (:mod:`~kms_agents.relay.plan` what QuSeC granted,
:mod:`~kms_agents.relay.messages` hop messages, acks and failures): the source role
(:mod:`~kms_agents.relay.engine`), the relay-node and destination roles
(:mod:`~kms_agents.relay.hop`), pre-relayed buffers (:mod:`~kms_agents.relay.prerelay`),
per-hop crypto (:mod:`~kms_agents.relay.crypto`, :mod:`~kms_agents.relay.shares`,
:mod:`~kms_agents.relay.hybrid`) and the authorisation table
(:mod:`~kms_agents.relay.authz`). Protobuf and gRPC stay at the edges:
:mod:`~kms_agents.relay.wire` (protobuf <-> dataclasses), :mod:`~kms_agents.relay.transport`
(sending to neighbours) and :mod:`~kms_agents.relay.servicer` (the KeyRelay service).
:mod:`~kms_agents.relay.node` wires it all for the agent.
"""
