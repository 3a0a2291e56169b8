"""The rerank stage's logic: the configured backend (an HTTP reranker, else the embedded scorer, which embeds
through the embedder stage and reuses the vector stage's stored vectors)."""

from __future__ import annotations

from deployments.config import RerankerConfig
from deployments.models import RerankHints, RerankResult
from deployments.reranker.backends import RerankBackend, make_reranker
from deployments.stages import EmbedderStage, VectorStage


class RerankerService:
    """`rerank(query, texts, hints) -> RerankResult`, `ping`, `aclose`."""

    def __init__(
        self, config: RerankerConfig, embedder: EmbedderStage | None = None, vector: VectorStage | None = None
    ):
        self.config = config
        self.backend: RerankBackend = make_reranker(
            config,
            embedder.embed if embedder is not None else None,
            vector.vectors if vector is not None else None,
        )

    async def rerank(self, query: str, texts: list[str], hints: RerankHints | None = None) -> RerankResult:
        return await self.backend.rerank(query, texts, hints)

    async def ping(self) -> str:
        return await self.backend.ping()

    async def aclose(self) -> None:
        await self.backend.aclose()
