"""QuSeC's gRPC gateway process: the control API (mutual TLS, asyncio), health, reflection, HTTP.

``python -m quseccontroller.gateway --bridge SOCK ...`` (the os-ken app starts and restarts it;
it can also run standalone). Modules: ``process`` (flags, event loop, ready file, shutdown),
``control`` (the QuSeCControl servicer), ``sessions`` (agents' control streams and their caps),
``rpc`` (gRPC server, TLS, peer identity, the error -> status mapping), ``httpd`` (plain
/metrics and /healthz, the operator's HTTPS interface) and ``metrics``.
"""
