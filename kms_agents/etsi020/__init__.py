"""ETSI GS QKD 020 V1.1.1 (interoperable KMS API) in the vKMS: KME-to-KME key passing over HTTPS.

Pure parts: :mod:`.model` (containers and the spec's constraints), :mod:`.problems` (RFC 9457
problem details), :mod:`.rules` (an external key's states and the ack/void rules). Edges:
:mod:`.store` (SQLite, the agent's key store), :mod:`.server` and :mod:`.client` (aiohttp over
TLS 1.3 with mutual certificates), :mod:`.node` (the running KME: one event loop thread).
Reference: docs/etsi020.md.
"""
