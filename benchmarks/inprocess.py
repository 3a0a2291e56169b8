"""The app's pipeline over the real engines in one process, without Ray Serve: MiniLM (EmbedderService), Qdrant
Edge (VectorService), ArcadeDB's Bolt server (GraphService with its in-memory index), the embedded scorer and
the extractive chat, wired by the same `Stages` the ingress builds over deployment handles.

For quality runs when Ray cannot start (a machine too loaded for its node to register) or is not wanted: the
retrieval code and engines are the ones the server runs; only the transport between stages differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from deployments.chat.service import ChatService
from deployments.config import AppConfig
from deployments.embedder.service import EmbedderService
from deployments.graph.embedded.server import EmbeddedBoltServer
from deployments.graph.passages import StagePassages
from deployments.graph.service import GraphService
from deployments.ingress.pipeline import Pipeline
from deployments.reranker.service import RerankerService
from deployments.stages import Stages
from deployments.vector.service import VectorService

T = TypeVar("T")


class VectorsBrought:
    """The vector stage's embedder when every chunk brings its vector (bulk loads): asked for the dimension, never
    to embed."""

    def __init__(self, dim: int):
        self.dim = dim

    async def dimension(self) -> int:
        return self.dim

    async def embed(self, texts: list[str]) -> list[list[float]]:
        raise AssertionError(f"asked to embed {len(texts)} texts: every row brings its vector")


def with_graph_service(config: Any, work: Callable[[GraphService], Awaitable[T]]) -> T:
    """`work(graph)` on a GraphService over the embedded Bolt server of `config` (a GraphConfig), started and stopped
    around it in this process: the benchmarks' bulk loads into the graph store before any server opens the folder."""
    bolt = EmbeddedBoltServer(config)
    bolt.start()

    async def run() -> T:
        graph = GraphService(config, bolt.uri)
        try:
            return await work(graph)
        finally:
            await graph.aclose()

    try:
        return asyncio.run(run())
    finally:
        bolt.stop()


@asynccontextmanager
async def in_process_pipeline(args: dict[str, Any]) -> AsyncIterator[Pipeline]:
    config = AppConfig.from_args(args)
    bolt = EmbeddedBoltServer(config.graph)
    bolt.start()
    embedder = EmbedderService(config.embedder)
    try:
        await embedder.warmup()
        vector = VectorService(config.vector, embedder)
        graph = GraphService(config.graph, bolt.uri, embed=embedder.embed, passages=StagePassages(vector))
        reranker = RerankerService(config.reranker, embedder, vector)
        chat = ChatService(config.chat)
        try:
            yield Pipeline(config, Stages(embedder=embedder, vector=vector, graph=graph, reranker=reranker, chat=chat))
        finally:
            for stage in (graph, vector, reranker, chat):
                close = getattr(stage, "aclose", None)
                if close is not None:
                    await close()
    finally:
        await embedder.aclose()
        bolt.stop()


class _Response:
    def __init__(self, body: Any):
        self.status_code = 200
        self._body = body

    def raise_for_status(self) -> None:
        return None

    def json(self) -> Any:
        return self._body


class InProcessClient:
    """`post("/v1/retrieve" | "/v1/ingest", json=...)` like an httpx.Client against the app and `ingest` like a
    GraphRAGClient (graphrag-ingest's loop calls it), served by an in-process pipeline on its own event loop thread
    (so synchronous benchmark code can drive it)."""

    def __init__(self, args: dict[str, Any]):
        import asyncio
        import threading

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._context = in_process_pipeline(args)
        self.pipeline: Pipeline = self._call(self._context.__aenter__())

    def _call(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def post(self, path: str, json: dict) -> _Response:
        from deployments.models import IngestRequest, RetrieveRequest

        if path == "/v1/retrieve":
            return _Response(self._call(self.pipeline.retrieve(RetrieveRequest(**json))).model_dump(mode="json"))
        if path == "/v1/ingest":
            return _Response(self._call(self.pipeline.ingest(IngestRequest(**json))).model_dump(mode="json"))
        raise ValueError(f"InProcessClient does not serve {path}")

    def ingest(self, documents: list[dict], collection: str) -> Any:
        """As GraphRAGClient.ingest (what graphrag-ingest's loop calls): the IngestResponse."""
        from deployments.models import IngestRequest

        return self._call(self.pipeline.ingest(IngestRequest(collection=collection, documents=documents)))

    def close(self) -> None:
        try:
            self._call(self._context.__aexit__(None, None, None))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
