"""Who may see the dashboard (pure rules and the token file): never a way around operator access.

Two doors. On the operator HTTPS port the dashboard is served like /status: to a certificate of
role operator. For a browser without that certificate, a second listener (``dashboard_listen``)
binds loopback only (a non-loopback address is refused unless ``dashboard_remote = allow``) and
wants a per-run secret: 256 random bits in ``STATE_DIR/dashboard.token`` (mode 0600), given once
in the URL (``?token=``, as Jupyter does), exchanged for an HttpOnly SameSite=Strict cookie, and
compared in constant time. A request from a non-loopback peer, or naming a host that is not a
loopback name (DNS rebinding), is refused there too unless remote access was allowed.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path

TOKEN_FILE = "dashboard.token"
TOKEN_BYTES = 32                      # 256 bits
COOKIE = "qusec_dashboard"
REMOTE_CHOICES = ("refuse", "allow")
LOOPBACK_NAMES = ("localhost",)


class DashboardAccessError(ValueError):
    """A dashboard listener that must not be opened (the message says why and what to set)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) stays on this machine."""
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, remote: str) -> None:
    """Refuse a non-loopback bind unless ``remote`` is "allow" (DashboardAccessError)."""
    if remote not in REMOTE_CHOICES:
        raise DashboardAccessError(f"--dashboard-remote: expected one of {', '.join(REMOTE_CHOICES)}, "
                                   f"got {remote!r}")
    if remote != "allow" and not is_loopback(host or "0.0.0.0"):
        raise DashboardAccessError(
            f"--dashboard-listen {host!r} is not a loopback address: the token listener serves "
            "this machine only (reach it with ssh -L, or open the dashboard on the operator "
            "port with an operator certificate); set --dashboard-remote allow to bind it anyway")


def host_header_ok(host_header: str, remote: str) -> bool:
    """The Host a browser named: a loopback name or address (a rebound DNS name is not)."""
    if remote == "allow":
        return True
    h = host_header.strip()
    if h.startswith("["):
        host = h[1:h.find("]")] if "]" in h else ""
    else:
        host = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    return bool(host) and is_loopback(host)


def peer_ok(peer: str | None, remote: str) -> bool:
    """A request's peer address: loopback unless remote access was allowed."""
    return remote == "allow" or (peer is not None and is_loopback(peer))


def token_ok(given: str | None, token: str) -> bool:
    """``given`` is the run's token (constant time; an empty or missing one never is)."""
    if not given or not token:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def cookie_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the cookie is not the URL's secret."""
    return hmac.new(token.encode(), b"qusec dashboard cookie", hashlib.sha256).hexdigest()


def cookie_ok(given: str | None, token: str) -> bool:
    return bool(given) and bool(token) and hmac.compare_digest(given.encode(), cookie_value(token).encode())


def cookie_header(token: str, secure: bool = False) -> str:
    """The Set-Cookie value: HttpOnly (no script reads it), SameSite=Strict (no other site
    sends it), scoped to the dashboard's paths."""
    return (f"{COOKIE}={cookie_value(token)}; Path=/dashboard; HttpOnly; SameSite=Strict"
            + ("; Secure" if secure else ""))


def token_path(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / TOKEN_FILE


def read_token(state_dir: str | os.PathLike) -> str:
    """The run's token from the state dir ("" when there is none)."""
    try:
        return token_path(state_dir).read_text().strip()
    except OSError:
        return ""


def ensure_token(state_dir: str | os.PathLike) -> str:
    """The run's token: the one in ``STATE_DIR/dashboard.token`` when that file is ours, mode
    0600 and well formed (a restarted gateway keeps the URL working), else a new one written
    with mode 0600 from the start."""
    path = token_path(state_dir)
    try:
        st = path.stat()
        text = path.read_text().strip()
        if (st.st_mode & 0o077) == 0 and st.st_uid == os.getuid() and len(text) >= 43:
            return text
    except OSError:
        pass
    token = secrets.token_urlsafe(TOKEN_BYTES)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    tmp.replace(path)
    return token


def remove_token(state_dir: str | os.PathLike) -> None:
    """A clean stop ends the run's token (the next run gets a new one)."""
    token_path(state_dir).unlink(missing_ok=True)
