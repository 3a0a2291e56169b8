"""The ASGI guards in front of every route (deployments/ingress/http_guards.py), without Ray: API keys, body
limit, the request timeout (504, and the route's task cancelled)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Request

from deployments.config import LimitsConfig
from deployments.ingress.auth import ApiKeyAuth, hash_key
from deployments.ingress.http_guards import HttpGuards

KEY = "guard-test-key"


def guarded_app(limits: LimitsConfig, keys: list[str] | None = None) -> tuple[FastAPI, dict]:
    app = FastAPI()
    app.add_middleware(HttpGuards)
    app.state.guards = (ApiKeyAuth([hash_key(k) for k in (keys or [])]), limits)
    seen: dict = {"cancelled": False}

    @app.post("/slow")
    async def slow() -> dict:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled"] = True  # what cancels the downstream handle calls a route awaits
            raise
        return {}

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app, seen


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://guarded")


async def test_request_past_the_timeout_is_504_and_the_route_is_cancelled():
    app, seen = guarded_app(LimitsConfig(request_timeout_s=0.2))
    async with client(app) as c:
        resp = await c.post("/slow")
    assert resp.status_code == 504 and "within 0.2s" in resp.json()["detail"]
    assert seen["cancelled"]


async def pieces(*parts: bytes):
    for part in parts:
        yield part


async def test_body_over_the_limit_is_413_with_or_without_content_length():
    app, _ = guarded_app(LimitsConfig(max_body_bytes=1024))
    async with client(app) as c:
        assert (await c.post("/echo", content=b"x" * 100)).json() == {"bytes": 100}
        declared = await c.post("/echo", content=b"x" * 2000)
        chunked = await c.post("/echo", content=pieces(b"x" * 600, b"x" * 600))  # no Content-Length
    assert declared.status_code == 413 and chunked.status_code == 413
    assert "limits.max_body_bytes" in chunked.json()["detail"]


@pytest.mark.parametrize(
    "headers,status",
    [
        ({}, 401),
        ({"X-API-Key": "wrong"}, 401),
        ({"X-API-Key": KEY}, 200),
        ({"Authorization": f"Bearer {KEY}"}, 200),
    ],
)
async def test_keys_are_checked_except_on_open_paths(headers, status):
    app, _ = guarded_app(LimitsConfig(), keys=[KEY])
    async with client(app) as c:
        resp = await c.post("/echo", content=b"{}", headers=headers)
        assert resp.status_code == status
        if status == 401:
            assert resp.headers["www-authenticate"] == "Bearer" and KEY not in resp.text
        assert (await c.get("/healthz")).status_code == 200  # probes need no key
