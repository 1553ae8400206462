"""QuSeC, the SDN controller of the QKD network: the os-ken app, its pure core and the gRPC gateway."""
from __future__ import annotations


def version() -> str:
    """The installed ``qusec`` distribution's version (``--version``); "unknown" when not installed."""
    from importlib.metadata import PackageNotFoundError, version as dist_version
    try:
        return dist_version("qusec")
    except PackageNotFoundError:
        return "unknown"
