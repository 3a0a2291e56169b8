"""Network helpers shared by the stages and the embedded servers: a free port, the loopback-only rule, URLs safe to
log."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def require_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"embedded services bind to loopback only, not {host!r}")


def redact_url(url: str | None) -> str | None:
    """A URL safe to log: credentials stripped."""
    if not url:
        return url
    parts = urlparse(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return parts._replace(netloc=netloc).geturl()
    return url
