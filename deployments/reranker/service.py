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
        self._embed = embedder.embed if embedder is not None else None
        self._vectors = vector.vectors if vector is not None else None
        self.backend: RerankBackend = make_reranker(config, self._embed, self._vectors)

    async def reconfigure(self, user_config: dict) -> None:
        """Serve's `user_config` of this deployment: reranker settings over the app's, applied live (a lightweight
        update, no replica replaced; changing the app's `args` replaces every replica of the app, the stores too).
        An invalid value raises, and Serve reports the update as failed."""
        config = RerankerConfig.model_validate({**self.config.model_dump(), **user_config})
        old, self.backend, self.config = self.backend, make_reranker(config, self._embed, self._vectors), config
        await old.aclose()

    async def rerank(self, query: str, texts: list[str], hints: RerankHints | None = None) -> RerankResult:
        return await self.backend.rerank(query, texts, hints)

    async def ping(self) -> str:
        return await self.backend.ping()

    async def aclose(self) -> None:
        await self.backend.aclose()
