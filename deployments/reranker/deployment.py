"""The rerank stage as a Serve deployment."""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import RerankerConfig
from deployments.handles import Remote
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
        embed: Embed | None = Remote(embedder).embed if embedder is not None else None
        fetch: FetchVectors | None = Remote(vector).vectors if vector is not None else None
        self._impl = make_reranker(config, embed, fetch)

    async def rerank(self, query: str, texts: list[str], hints: RerankHints | None = None) -> RerankResult:
        return await self._impl.rerank(query, texts, hints)

    async def ping(self) -> str:
        return await self._impl.ping()

    async def __del__(self) -> None:  # Serve awaits an async __del__ on replica shutdown
        await self._impl.aclose()
