"""The handle transport of the stage interfaces (deployments.stages): a deployment handle with the stage's methods.

Awaiting a DeploymentResponse does not cancel the remote request when the awaiting task is cancelled (client
gone, timeout); every call made through `Remote` does, so a cancelled request stops its whole graph.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from ray.serve.handle import DeploymentHandle

from deployments.stages import ChatStage, EmbedderStage, GraphStage, RerankerStage, Stages, VectorStage


def cancelling(method: Any) -> Callable:
    """A handle method whose call is cancelled downstream when the awaiting task is."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        response = method.remote(*args, **kwargs)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()
            raise

    return call


def cancelling_stream(method: Any) -> Callable:
    """The same for a streaming handle method: closing or cancelling the iterator cancels the remote generator."""

    async def call(*args: Any, **kwargs: Any) -> AsyncIterator:
        stream = method.remote(*args, **kwargs)
        finished = False
        try:
            async for item in stream:
                yield item
            finished = True
        finally:
            if not finished:
                stream.cancel()

    return call


class Remote:
    """A deployment seen through its methods: `Remote(handle).search(...)` awaits `handle.search.remote(...)`,
    cancelled with its caller. Methods named in `streaming` are async generators over a `stream=True` handle."""

    def __init__(self, handle: DeploymentHandle, streaming: tuple[str, ...] = ()):
        self._handle = handle
        self._streaming = streaming

    def __getattr__(self, name: str) -> Callable:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._streaming:
            call = cancelling_stream(getattr(self._handle.options(stream=True), name))
        else:
            call = cancelling(getattr(self._handle, name))
        self.__dict__[name] = call  # built once per method
        return call


def stages_from_handles(
    embedder: DeploymentHandle,
    vector: DeploymentHandle,
    graph: DeploymentHandle,
    reranker: DeploymentHandle,
    chat: DeploymentHandle,
) -> Stages:
    return Stages(
        embedder=cast(EmbedderStage, Remote(embedder)),
        vector=cast(VectorStage, Remote(vector)),
        graph=cast(GraphStage, Remote(graph)),
        reranker=cast(RerankerStage, Remote(reranker)),
        chat=cast(ChatStage, Remote(chat, streaming=("answer_stream",))),
    )
