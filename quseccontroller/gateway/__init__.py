"""QuSeC's gRPC gateway process: the control API (mutual TLS), health, reflection, HTTP metrics.

``python -m quseccontroller.gateway --bridge SOCK ...`` (the os-ken app starts and restarts it;
it can also run standalone). Modules: ``process`` (flags, start-up, ready file, shutdown),
``control`` (the QuSeCControl servicer), ``sessions`` (agents' control streams), ``rpc`` (gRPC
server, TLS, peer identity, the error -> status mapping), ``httpd`` and ``metrics``.
"""
