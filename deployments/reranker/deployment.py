"""The rerank stage as a Serve deployment."""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import RerankerConfig
from deployments.models import RerankHints, RerankResult
from deployments.observability import configure_logging
from deployments.reranker.backends import make_reranker

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
FetchVectors = Callable[[str, list[str]], Awaitable[dict[str, list[float]]]]
log = logging.getLogger("graphrag.reranker")
STAGE = "rerank"
EMBEDDED_SCORER = "embedded-dense-lexical"



@serve.deployment
class Reranker:
    """Serve wrapper: `rerank(query, texts) -> RerankResult`, `ping() -> str`."""

    def __init__(self, config: RerankerConfig, embedder: DeploymentHandle | None = None, vector: DeploymentHandle | None = None):
        configure_logging()
        embed: Embed | None = None
        fetch: FetchVectors | None = None
        if embedder is not None:
            async def embed(texts: list[str]) -> list[list[float]]:
                return await embedder.embed.remote(texts)
        if vector is not None:
            async def fetch(collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
                return await vector.vectors.remote(collection, chunk_ids)

        self._impl = make_reranker(config, embed, fetch)

    async def rerank(self, query: str, texts: list[str], hints: RerankHints | None = None) -> RerankResult:
        return await self._impl.rerank(query, texts, hints)

    async def ping(self) -> str:
        return await self._impl.ping()

    async def __del__(self) -> None:  # Serve awaits an async __del__ on replica shutdown
        await self._impl.aclose()
