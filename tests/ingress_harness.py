"""The ingress's FastAPI app over HTTP without Ray: the real routes, exception handlers and guards, with the
pipeline over plain stage objects (tests/fakes.py's FakeStages), served in-process by an ASGI client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import httpx
from ray import serve

from deployments.config import AppConfig
from deployments.ingress.auth import ApiKeyAuth
from deployments.ingress.deployment import Ingress
from deployments.ingress.http_app import app
from deployments.ingress.pipeline import Pipeline
from deployments.stages import Stages


class _NoMetrics:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class _TestIngress(Ingress.func_or_class):
    def __del__(self):  # the Serve wrapper's async __del__ shuts down a replica this test never started
        pass


@contextmanager
def ingress_client(
    stages: Stages, monkeypatch, args: dict | None = None, raise_app_exceptions: bool = False
) -> Iterator[httpx.AsyncClient]:
    """An httpx client for the ingress app whose routes run on an Ingress over `stages` (no Serve replica: the
    routes' `self` comes from a patched replica context)."""
    config = AppConfig.from_args({"data_dir": "/tmp/graphrag-unit", **(args or {})})
    ingress = object.__new__(_TestIngress)
    ingress.config, ingress.pipeline, ingress.metrics = config, Pipeline(config, stages), _NoMetrics()
    monkeypatch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=ingress))
    monkeypatch.setattr(app.state, "guards", (ApiKeyAuth(config.auth), config.limits), raising=False)
    monkeypatch.setattr(app.state, "metrics", None, raising=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    yield httpx.AsyncClient(transport=transport, base_url="http://ingress")
