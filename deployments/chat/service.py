"""The chat stage's logic: the configured backend (provider chain or extractive), answering whole or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from deployments.chat.backends import ChatBackend, make_chat
from deployments.config import ChatConfig
from deployments.models import ChatDelta, ChatResult


class ChatService:
    """`answer`, `answer_stream` (the pieces as they come), `ping`, `aclose`."""

    def __init__(self, config: ChatConfig, backend: ChatBackend | None = None):
        self.config = config
        self.backend = backend if backend is not None else make_chat(config)

    async def answer(self, query: str, passages: list[str], facts: list[str]) -> ChatResult:
        return await self.backend.answer(query, passages, facts)

    async def answer_stream(self, query: str, passages: list[str], facts: list[str]) -> AsyncIterator[ChatDelta]:
        """Closing this iterator early (a cancelled caller) closes the provider's stream."""
        first, rest = await self.backend.open_stream(query, passages, facts)
        try:
            yield first
            async for piece in rest:
                yield piece
        finally:
            aclose = getattr(rest, "aclose", None)
            if aclose is not None:
                await aclose()

    async def ping(self) -> str:
        return await self.backend.ping()

    async def aclose(self) -> None:
        await self.backend.aclose()
