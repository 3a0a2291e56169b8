"""API-key authentication and authorisation: keys are compared by SHA-256 digest in constant time and never
stored or logged; each key grants scopes (read, write, admin) and optionally only some collections.

    python -m deployments.ingress.auth hash            # reads a key on stdin, prints the digest for auth config

The HTTP guard layer authenticates the key and checks the scope the route needs (`required_scope`: method and
path, no body parsing); the collection is known only once the route has parsed its request, so the route checks
it against the grant the guard left in the request's state (`authorize_collection`): 403 for either.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from deployments.auth_config import ALL_SCOPES, AuthConfig
from deployments.ui.paths import UI_OPEN_PATHS

# Open even when keys are configured: load balancers and orchestrators probe them without credentials; the web
# page's static files (no data) load without a key so that the user can type it there.
OPEN_PATHS = frozenset({"/healthz", "/readyz"}) | UI_OPEN_PATHS
# Any valid key may read the API's description.
DOC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

# (method, path pattern, scope). A route missing here needs `admin`: a new route is closed until it is listed
# (tests/ingress/test_auth_scopes.py checks that every route of the app is).
ROUTE_SCOPES: tuple[tuple[str, re.Pattern, str], ...] = tuple(
    (method, re.compile(pattern), scope)
    for method, pattern, scope in (
        ("POST", r"/v1/retrieve", "read"),
        ("POST", r"/v1/answer", "read"),
        ("POST", r"/v1/chat/completions", "read"),
        ("GET", r"/v1/models", "read"),
        ("POST", r"/v1/embeddings", "read"),  # no collection: any key that may read
        # MCP (streamable HTTP): each tool then checks its own scope and collection (ingress/mcp_server.py).
        ("POST", r"/mcp", "read"),
        ("GET", r"/mcp", "read"),
        ("DELETE", r"/mcp", "read"),
        ("GET", r"/v1/stats", "read"),
        ("GET", r"/v1/collections", "read"),  # filtered by the key's collection allow-list
        ("GET", r"/v1/collections/[^/]+", "read"),
        ("GET", r"/v1/collections/[^/]+/documents", "read"),
        ("GET", r"/v1/collections/[^/]+/verify", "read"),
        ("POST", r"/v1/collections/[^/]+/repair", "write"),
        ("GET", r"/v1/graph/entities/.+", "read"),
        ("POST", r"/v1/ingest", "write"),
        ("DELETE", r"/v1/documents/.+", "write"),
        ("POST", r"/v1/graph/query", "admin"),  # arbitrary read Cypher over every collection
        ("DELETE", r"/v1/collections/[^/]+", "admin"),  # drops a whole collection
        ("POST", r"/v1/admin/(snapshot|restore)", "admin"),  # files on the server's machine, every collection
    )
)


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs; None for the API description (any valid key)."""
    if path in DOC_PATHS:
        return None
    for route_method, pattern, scope in ROUTE_SCOPES:
        if route_method == method and pattern.fullmatch(path):
            return scope
    return "admin"


@dataclass(frozen=True)
class Grant:
    """What the presented key may do."""

    scopes: frozenset[str]
    collections: frozenset[str] | None  # None: every collection
    name: str = "-"

    def allows_collection(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections


FULL_ACCESS = Grant(frozenset(ALL_SCOPES), None, "full-access")


class Forbidden(Exception):
    """A valid key without the scope or the collection the request needs (HTTP 403)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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
    def __init__(self, config: AuthConfig | list[str]):
        if isinstance(config, list):  # digests of full-access keys
            config = AuthConfig(api_key_hashes=config)
        self._keys = [(bytes.fromhex(h), FULL_ACCESS) for h in config.api_key_hashes]
        self._keys += [
            (
                bytes.fromhex(k.sha256),
                Grant(frozenset(k.scopes), None if k.collections is None else frozenset(k.collections), k.name or "-"),
            )
            for k in config.keys
        ]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def requires_key(self, path: str) -> bool:
        return self.enabled and path not in OPEN_PATHS

    def authenticate(self, headers: Mapping[str, str]) -> Grant | str:
        """The key's grant (full access in open mode), or the reason for a 401 (never echoing the key)."""
        if not self.enabled:
            return FULL_ACCESS
        key = presented_key(headers)
        if key is None:
            return "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        digest = hashlib.sha256(key.encode()).digest()
        # Compare against every digest, without stopping early, so timing tells nothing about which one matched.
        grant = None
        for known, known_grant in self._keys:
            if hmac.compare_digest(digest, known):
                grant = known_grant
        return grant if grant is not None else "invalid API key"

    def check(self, headers: Mapping[str, str]) -> str | None:
        """None when the key is valid, else the reason for a 401."""
        result = self.authenticate(headers)
        return result if isinstance(result, str) else None


def scope_refusal(grant: Grant, method: str, path: str) -> str | None:
    """None when the grant has the scope the route needs, else the reason for a 403."""
    scope = required_scope(method, path)
    if scope is None or scope in grant.scopes:
        return None
    return (
        f"this API key lacks the {scope!r} scope that {method} {path} needs (it has: {', '.join(sorted(grant.scopes))})"
    )


def authorize_collection(state: Mapping | None, collection: str, guarded: bool) -> None:
    """Raises Forbidden unless the request's grant (left in the ASGI scope's state by the guard) allows the
    collection. An app without guards (plain FastAPI in tests) has no grant and is not checked."""
    grant = (state or {}).get("grant")
    if grant is None:
        if guarded:  # guards on but no grant: never let it pass
            raise Forbidden("no API key grant for this request")
        return
    if not grant.allows_collection(collection):
        raise Forbidden(f"this API key may not access collection {collection!r}")


def visible_collections(state: Mapping | None, guarded: bool) -> frozenset[str] | None:
    """The collections the request's key may see in a listing (None: every one). Like `authorize_collection`, an
    app without guards is not checked, and guards without a grant never let anything through."""
    grant = (state or {}).get("grant")
    if grant is None:
        if guarded:
            raise Forbidden("no API key grant for this request")
        return None
    return grant.collections


def main() -> None:
    if sys.argv[1:] != ["hash"]:
        sys.exit("usage: python -m deployments.ingress.auth hash   (the key on stdin)")
    key = sys.stdin.readline().strip()
    if not key:
        sys.exit("no key on stdin")
    print(hash_key(key))


if __name__ == "__main__":
    main()
