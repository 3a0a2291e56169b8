"""API-key authentication: keys are compared by SHA-256 digest in constant time and never stored or logged.

    python -m deployments.ingress.auth hash            # reads a key on stdin, prints the digest for auth.api_key_hashes
"""
from __future__ import annotations

import hashlib
import hmac
import sys
from collections.abc import Mapping

# Open even when keys are configured: load balancers and orchestrators probe them without credentials.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>` (lower-case header names)."""
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


class ApiKeyAuth:
    def __init__(self, key_hashes: list[str]):
        self._digests = [bytes.fromhex(h) for h in key_hashes]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def requires_key(self, path: str) -> bool:
        return self.enabled and path not in OPEN_PATHS

    def check(self, headers: Mapping[str, str]) -> str | None:
        """None when the request may pass, else the reason for a 401 (never echoing the key)."""
        key = presented_key(headers)
        if key is None:
            return "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        digest = hashlib.sha256(key.encode()).digest()
        # Compare against every digest, without stopping early, so timing tells nothing about which one matched.
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        return None if matched else "invalid API key"


def main() -> None:
    if sys.argv[1:] != ["hash"]:
        sys.exit("usage: python -m deployments.ingress.auth hash   (the key on stdin)")
    key = sys.stdin.readline().strip()
    if not key:
        sys.exit("no key on stdin")
    print(hash_key(key))


if __name__ == "__main__":
    main()
