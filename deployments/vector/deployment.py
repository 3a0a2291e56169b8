"""The vector stage as a Serve deployment over VectorService."""
from __future__ import annotations

import logging
import re

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import VectorConfig
from deployments.models import COLLECTION_PATTERN
from deployments.observability import configure_logging
from deployments.vector.service import VectorService

log = logging.getLogger(__name__)

STAGE = "vector"
_COLLECTION = re.compile(COLLECTION_PATTERN)
_UPSERT_BATCH = 256  # points per request to a Qdrant server


@serve.deployment
class Vector(VectorService):
    """The vector stage as a Serve deployment; embeds through the Embedder deployment."""

    def __init__(self, config: VectorConfig, embedder: DeploymentHandle):
        configure_logging()
        super().__init__(
            config,
            embed=lambda texts: embedder.embed.remote(texts),
            dimension=lambda: embedder.dimension.remote(),
        )

    async def __del__(self) -> None:
        await self.aclose()
