"""Pure ASGI middleware in front of every route: API keys, request body size, the global request timeout.

Pure ASGI (not BaseHTTPMiddleware) so streamed responses pass through untouched and a cancelled request
cancels the route's task itself, which cancels every downstream handle call it awaits. Installed on the whole
app, so routes added later are covered by construction.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException

from deployments.config import LimitsConfig
from deployments.ingress.auth import OPEN_PATHS, ApiKeyAuth, scope_refusal

log = logging.getLogger("graphrag.http")

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


async def send_json(
    send: Callable[[Message], Awaitable[None]], status: int, body: dict, headers: dict[str, str] | None = None
) -> None:
    raw = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": raw})


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class _BodyTooLarge(HTTPException):
    # An HTTPException, so FastAPI's body parsing passes it on as a 413 instead of wrapping it into a 400.
    def __init__(self, detail: str):
        super().__init__(status_code=413, detail=detail)


class HttpGuards:
    """One ASGI layer: 401 without a valid key, 403 without the route's scope, 413 over the body limit, 504 past
    the request timeout."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive, send) -> None:
        # Read per request from the serving app's state (`app.state.guards`, set by the ingress replica's
        # constructor, after the app object exists); unset means unguarded (plain FastAPI tests).
        state = getattr(scope.get("app"), "state", None)
        current: tuple[ApiKeyAuth, LimitsConfig] | None = (
            getattr(state, "guards", None) if scope["type"] == "http" else None
        )
        if current is None:
            await self.app(scope, receive, send)
            return
        auth, limits = current
        headers = _headers(scope)
        path = scope.get("path", "")
        if path not in OPEN_PATHS:
            grant = auth.authenticate(headers)  # full access in open mode (no keys configured)
            if isinstance(grant, str):
                await send_json(send, 401, {"detail": grant}, {"WWW-Authenticate": "Bearer"})
                return
            refusal = scope_refusal(grant, scope.get("method", ""), path)
            if refusal is not None:
                log.warning("key %s refused: %s", grant.name, refusal)
                await send_json(send, 403, {"detail": refusal})
                return
            # The routes check the collection they parse against it (auth.authorize_collection).
            scope.setdefault("state", {})["grant"] = grant
        too_large = f"request body larger than {limits.max_body_bytes} bytes (limits.max_body_bytes)"
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
            await send_json(send, 413, {"detail": too_large})
            return

        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limits.max_body_bytes:  # a chunked body without Content-Length
                    raise _BodyTooLarge(too_large)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        timeout = limits.ingest_request_timeout_s if path == "/v1/ingest" else limits.request_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await self.app(scope, bounded_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await send_json(send, 413, {"detail": too_large})
        except TimeoutError:
            # The route's task was cancelled, and with it every handle call it was awaiting.
            log.warning("request to %s passed the %.0fs request timeout; cancelled", path, timeout)
            if not started:
                await send_json(
                    send, 504, {"detail": f"the request did not finish within {timeout:g}s and was cancelled"}
                )
            else:  # a stream already under way: end it
                await send({"type": "http.response.body", "body": b"", "more_body": False})
