"""The vector stage as a Serve deployment over VectorService."""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import VectorConfig
from deployments.handles import Remote
from deployments.observability import configure_logging
from deployments.vector.service import VectorService


@serve.deployment
class Vector(VectorService):
    """The vector stage as a Serve deployment; embeds through the Embedder deployment."""

    def __init__(self, config: VectorConfig, embedder: DeploymentHandle):
        configure_logging()
        super().__init__(config, Remote(embedder))

    async def __del__(self) -> None:
        await self.aclose()
