"""The in-process monolith: the same real components as the Serve graph, in one uvicorn process."""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks.speed.real_stages import APP_ARGS


class ChatAdapter:
    """The chat backend with the ChatStage methods the Chat deployment adds (answer_stream)."""

    def __init__(self, impl: Any):
        self.impl = impl

    async def answer(self, query: str, passages: list[str], facts: list[str]) -> Any:
        return await self.impl.answer(query, passages, facts)

    async def answer_stream(self, query: str, passages: list[str], facts: list[str]) -> Any:
        first, rest = await self.impl.open_stream(query, passages, facts)
        yield first
        async for piece in rest:
            yield piece

    async def ping(self) -> str:
        return await self.impl.ping()


class PrometheusMetrics:
    """ray.serve.metrics' Histogram and Counter over prometheus_client: the monolith records the ingress's metrics
    as a FastAPI gateway would (no Ray in that process)."""

    class _Metric:
        def __init__(self, kind: Any, name: str, description: str = "", tag_keys: tuple = (), **kwargs: Any):
            self._metric = kind(name, description, labelnames=tag_keys, **kwargs)
            self._tagged = bool(tag_keys)

        def _of(self, tags: dict | None) -> Any:
            return self._metric.labels(**tags) if self._tagged else self._metric

    class Histogram(_Metric):
        def __init__(self, name: str, description: str = "", boundaries: list | None = None, tag_keys: tuple = ()):
            import prometheus_client

            super().__init__(prometheus_client.Histogram, name, description, tag_keys, buckets=boundaries)

        def observe(self, value: float, tags: dict | None = None) -> None:
            self._of(tags).observe(value)

    class Counter(_Metric):
        def __init__(self, name: str, description: str = "", tag_keys: tuple = ()):
            import prometheus_client

            super().__init__(prometheus_client.Counter, name, description, tag_keys)

        def inc(self, value: float = 1.0, tags: dict | None = None) -> None:
            self._of(tags).inc(value)


def ingress_app(config: Any, stages: Any) -> Any:
    """The ingress deployment's own FastAPI app (its routes, auth, limits, guards, error handlers, metrics) over
    in-process stages: what Serve serves, minus Serve. Its class-based routes find their object through the
    replica context, which this process provides."""
    from types import SimpleNamespace

    from ray import serve

    from deployments.ingress.deployment import Ingress
    from deployments.ingress.http_app import app
    from deployments.ui.stats import WindowedStageMetrics

    routes: list[Any] = []
    serve.get_replica_context = lambda: SimpleNamespace(servable_object=routes[0], app_name="monolith")

    @app.on_event("startup")
    async def start_routes() -> None:  # Ingress._start needs the running loop (its recovery task)
        routes.append(Ingress.func_or_class.over_stages(config, stages, WindowedStageMetrics(PrometheusMetrics)))

    return app


def monolith_main(data_dir: str, port: int, http_layer: str) -> None:
    """One uvicorn process: the app's Pipeline over the real services, the stores opened here. `http_layer`:
    "ingress" serves the ingress deployment's own FastAPI app (the same HTTP layer as the Serve graph, so the
    two differ only by the distribution); "thin" two bare FastAPI routes over the Pipeline."""
    import uvicorn
    from fastapi import FastAPI

    from deployments.chat.backends import make_chat
    from deployments.config import AppConfig
    from deployments.embedder.service import EmbedderService
    from deployments.graph.embedded.server import EmbeddedBoltServer
    from deployments.graph.passages import StagePassages
    from deployments.graph.service import GraphService
    from deployments.ingress.pipeline import Pipeline
    from deployments.models import AnswerRequest, AnswerResponse, RetrieveRequest, RetrieveResponse
    from deployments.reranker.backends import make_reranker
    from deployments.stages import Stages
    from deployments.vector.service import VectorService

    config = AppConfig.from_args({**APP_ARGS, "data_dir": data_dir})
    bolt = EmbeddedBoltServer(config.graph)
    bolt.start()
    # The Embedder deployment's own service: the same batching and the same shared-query cache as in Serve.
    embedder = EmbedderService(config.embedder)
    vector = VectorService(config.vector, embedder)
    graph = GraphService(config.graph, bolt.uri, embed=embedder.embed, passages=StagePassages(vector))
    reranker = make_reranker(config.reranker, embedder.embed, vector.vectors)
    stages = Stages(
        embedder=embedder, vector=vector, graph=graph, reranker=reranker, chat=ChatAdapter(make_chat(config.chat))
    )
    pipeline = Pipeline(config, stages)
    app = ingress_app(config, stages) if http_layer == "ingress" else FastAPI(title="real-stage monolith")

    async def retrieve(req: RetrieveRequest) -> RetrieveResponse:
        return await pipeline.retrieve(req)

    async def answer(req: AnswerRequest) -> AnswerResponse:
        return await pipeline.answer(req)

    # This module's annotations are strings (from __future__) naming classes imported in this function, which
    # FastAPI cannot resolve: give it the classes, or the body would be read as a query parameter.
    retrieve.__annotations__ = {"req": RetrieveRequest, "return": RetrieveResponse}
    answer.__annotations__ = {"req": AnswerRequest, "return": AnswerResponse}
    if http_layer == "thin":
        app.post("/v1/retrieve", response_model=RetrieveResponse)(retrieve)
        app.post("/v1/answer", response_model=AnswerResponse)(answer)

    @app.on_event("startup")
    async def warm() -> None:
        await embedder.backend.warmup()

    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    finally:
        asyncio.run(vector.aclose())
        bolt.stop()
