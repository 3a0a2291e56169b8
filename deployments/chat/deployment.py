"""The chat stage as a Serve deployment over ChatService (`answer_stream` is called through a stream=True handle)."""

from __future__ import annotations

from ray import serve

from deployments.chat.service import ChatService
from deployments.config import ChatConfig
from deployments.observability import configure_logging


@serve.deployment
class Chat(ChatService):
    def __init__(self, config: ChatConfig):
        configure_logging()
        super().__init__(config)

    async def __del__(self) -> None:  # Serve awaits an async __del__ on replica shutdown
        await self.aclose()
