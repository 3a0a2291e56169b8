"""The web page (`GET /ui/`), served by the ingress itself, and the JSON it needs beyond the public API
(`GET /v1/stats`). `add_ui(app)` adds both to the ingress's FastAPI app.

The page is plain HTML/JS/CSS under static/ plus Cytoscape.js vendored from npm (package.json +
package-lock.json here; `make ui-vendor` refreshes static/vendor/). Its static files load without an API key
(deployments/ui/paths.py); every call the page makes goes to the guarded /v1 API with the key the user typed.
"""

# No `from __future__ import annotations` here: Serve ships the app to the replica by value (cloudpickle), and
# the routes' string annotations would not resolve there (`request: Request` became a query parameter).
import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from deployments.ui.paths import PAGE_PATH, STATIC_DIR, STATIC_FILES
from deployments.ui.stats import RollingStageStats, replicas_from_details

log = logging.getLogger("graphrag.ui")

# The page runs only its own scripts and talks only to this server: no CDN, no inline script, no framing.
# Inline styles stay allowed: Cytoscape.js sizes its canvases through style attributes.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
REPLICAS_TTL_S = 2.0  # Serve's controller is asked at most this often, however many pages poll


class ReplicaCounts:
    """Replicas per deployment of this application, from Serve's controller, cached for `ttl_s`."""

    def __init__(self, ttl_s: float = REPLICAS_TTL_S):
        self.ttl_s = ttl_s
        self._at = 0.0
        self._value: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at > self.ttl_s:
                self._value = await self._fetch()
                self._at = time.monotonic()
            return self._value

    @staticmethod
    async def _fetch() -> dict[str, Any]:
        try:
            from ray import serve
            from ray.serve.context import _get_global_client

            app_name = serve.get_replica_context().app_name
            client = _get_global_client()
            # A blocking ray.get on the controller: off the replica's event loop.
            details = await asyncio.to_thread(client.get_serve_details)
        except Exception as exc:  # outside Serve, or the controller unreachable: the page says why
            log.warning("replica counts unavailable: %s", exc)
            return {"app": None, "deployments": [], "error": f"replica counts unavailable: {type(exc).__name__}: {exc}"}
        return {"app": app_name, "deployments": replicas_from_details(details, app_name), "error": None}


def _static(path: str) -> Response:
    name, media_type = STATIC_FILES[path]
    return Response((STATIC_DIR / name).read_bytes(), media_type=media_type, headers=SECURITY_HEADERS)


def ui_router() -> APIRouter:
    router = APIRouter()

    @router.get("/ui", include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse(PAGE_PATH, status_code=307)

    @router.get("/ui/{file:path}", include_in_schema=False)
    async def ui_file(file: str) -> Response:
        path = f"/ui/{file}"
        if path not in STATIC_FILES:
            raise HTTPException(status_code=404, detail="no such file")
        return _static(path)

    @router.get("/v1/stats", summary="Per-stage rate and latency over the last minutes, and replicas per deployment")
    async def stats(request: Request) -> dict:
        """What the web page's Stages view polls: the ingress replica's rolling window of the per-stage timings it
        measured (rate over the last minute, p50/p95 over the window, per 10 s bucket) and Serve's replica counts."""
        state = request.app.state
        metrics = getattr(state, "metrics", None)
        window: RollingStageStats | None = getattr(metrics, "window", None)
        replicas = getattr(state, "ui_replicas", None)
        if replicas is None:
            replicas = state.ui_replicas = ReplicaCounts()
        return {
            "stages": window.snapshot() if window is not None else None,
            "replicas": await replicas.get(),
        }

    return router


def add_ui(app: FastAPI) -> None:
    """Adds the page and `GET /v1/stats` to the ingress's app; the ingress must record into a
    `WindowedStageMetrics` (app.state.metrics) for the stats to have stage figures."""
    app.include_router(ui_router())
