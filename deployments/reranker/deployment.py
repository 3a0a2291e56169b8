"""The rerank stage as a Serve deployment over RerankerService."""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import RerankerConfig
from deployments.handles import Remote
from deployments.observability import configure_logging
from deployments.reranker.service import RerankerService


@serve.deployment
class Reranker(RerankerService):
    """The rerank stage; the embedded scorer reaches the embedder and vector deployments through their handles."""

    def __init__(
        self, config: RerankerConfig, embedder: DeploymentHandle | None = None, vector: DeploymentHandle | None = None
    ):
        configure_logging()
        super().__init__(
            config,
            Remote(embedder) if embedder is not None else None,
            Remote(vector) if vector is not None else None,
        )

    async def __del__(self) -> None:  # Serve awaits an async __del__ on replica shutdown
        await self.aclose()
