"""The chat stage as a Serve deployment."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TypeVar

from ray import serve

from deployments.chat.backends import make_chat
from deployments.config import ChatConfig
from deployments.models import ChatDelta, ChatResult
from deployments.observability import configure_logging

logger = logging.getLogger(__name__)
STAGE = "chat"
T = TypeVar("T")



@serve.deployment
class Chat:
    """Serve wrapper: `answer(query, passages, facts) -> ChatResult`, `ping() -> str`."""

    def __init__(self, config: ChatConfig):
        configure_logging()
        self._impl = make_chat(config)

    async def answer(self, query: str, passages: list[str], facts: list[str]) -> ChatResult:
        return await self._impl.answer(query, passages, facts)

    async def answer_stream(self, query: str, passages: list[str], facts: list[str]) -> AsyncIterator[ChatDelta]:
        """Streamed through a `stream=True` handle; cancelling the caller's generator closes the provider's stream."""
        first, rest = await self._impl.open_stream(query, passages, facts)
        yield first
        async for piece in rest:
            yield piece

    async def ping(self) -> str:
        return await self._impl.ping()

    async def __del__(self) -> None:  # Serve awaits an async __del__ on replica shutdown
        await self._impl.aclose()
