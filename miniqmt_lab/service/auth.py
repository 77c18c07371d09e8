"""The server's token: made at the first start, kept owner-only in ``<data_dir>/server.token``, and
compared in constant time on every request (``Authorization: Bearer <token>``)."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path

from miniqmt_lab.fsutil import atomic_write_text, owner_only

TOKEN_FILE = "server.token"
MIN_TOKEN_LENGTH = 32


def load_or_create_token(data_dir: str | Path) -> str:
    """The token of the server of ``data_dir``: the one kept there, or a new random one written there."""
    path = Path(data_dir) / TOKEN_FILE
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= MIN_TOKEN_LENGTH:
            owner_only(path)
            return token
    token = secrets.token_urlsafe(32)
    atomic_write_text(path, token + "\n")
    return token


def token_matches(offered: str | None, token: str) -> bool:
    return offered is not None and hmac.compare_digest(offered.encode("utf-8"), token.encode("utf-8"))


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None: no bearer token)."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, 'localhost')."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def page_url(host: str, port: int, token: str) -> str:
    """The URL to open: loopback for a loopback or wildcard bind, else the host given."""
    shown = host if not is_loopback(host) and host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


__all__ = ["TOKEN_FILE", "bearer", "is_loopback", "load_or_create_token", "page_url", "token_matches"]
