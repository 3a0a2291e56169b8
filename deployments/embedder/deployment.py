"""The embedder stage as a Serve deployment over EmbedderService."""

from __future__ import annotations

from ray import serve

from deployments.config import EmbedderConfig
from deployments.embedder.service import EmbedderService
from deployments.observability import configure_logging


@serve.deployment
class Embedder(EmbedderService):
    """The embedder stage; loads the model before the replica takes requests."""

    async def __init__(self, config: EmbedderConfig):  # type: ignore[misc]  # Serve awaits an async __init__
        configure_logging()
        super().__init__(config)
        await self.warmup()

    async def __del__(self) -> None:  # Serve awaits an async __del__ on replica shutdown
        await self.aclose()
