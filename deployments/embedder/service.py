"""The embedder stage's logic: texts of concurrent calls share one model call (up to max_batch_size texts)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from deployments.config import EmbedderConfig
from deployments.embedder.backends import EmbeddingBackend, make_embedder
from deployments.embedder.batching import MicroBatcher

_SHARED_MAX_CHARS = 2000  # a single short text (a query) is shared between concurrent callers ...
_SHARED_CACHE = 1024  # ... and the last this many are kept


class EmbedderService:
    """Embeds lists of texts with the configured backend, batching concurrent calls."""

    def __init__(self, config: EmbedderConfig, backend: EmbeddingBackend | None = None):
        self.config = config
        self.backend = backend if backend is not None else make_embedder(config)
        self._batcher = MicroBatcher(self._embed_calls, config.max_batch_size, config.batch_wait_timeout_s)
        self._batches = 0
        self._texts = 0
        # One query is embedded for the vector and the graph stage at the same moment: the second call awaits
        # the first one's result (or takes it from this small cache) instead of embedding the text again.
        self._recent: OrderedDict[str, asyncio.Future] = OrderedDict()

    async def warmup(self) -> None:
        await self.backend.warmup()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        if len(texts) == 1 and len(texts[0]) <= _SHARED_MAX_CHARS:
            return [await self._embed_shared(texts[0])]
        # A batch holds at most max_batch_size texts: a bigger call goes in batch-sized pieces.
        step = self.config.max_batch_size
        parts = await asyncio.gather(*(self._batcher(texts[i : i + step]) for i in range(0, len(texts), step)))
        return [vector for part in parts for vector in part]

    async def _embed_shared(self, text: str) -> list[float]:
        future = self._recent.get(text)
        if future is None or (future.done() and (future.cancelled() or future.exception() is not None)):
            future = asyncio.ensure_future(self._batcher([text]))
            future.waiters = 0  # type: ignore[attr-defined]
            self._recent[text] = future
            while len(self._recent) > _SHARED_CACHE:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(text)
        future.waiters += 1  # type: ignore[attr-defined]
        try:
            return (await asyncio.shield(future))[0]
        finally:
            future.waiters -= 1  # type: ignore[attr-defined]
            if future.waiters == 0 and not future.done():  # type: ignore[attr-defined]
                future.cancel()  # every caller is gone: leave the text out of its batch

    async def _embed_calls(self, calls: list[list[str]]) -> list[list[list[float]]]:
        """One model call for the texts of many calls; results split back per call."""
        flat = [text for texts in calls for text in texts]
        vectors = await self.backend.embed(flat)
        self._batches += 1
        self._texts += len(flat)
        out, start = [], 0
        for texts in calls:
            out.append(vectors[start : start + len(texts)])
            start += len(texts)
        return out

    async def dimension(self) -> int:
        return await self.backend.dimension()

    async def count_tokens(self, texts: list[str]) -> int | None:
        """The model's tokens in `texts` as embedded (after truncation); None for a backend without a local
        tokenizer (an OpenAI-compatible endpoint)."""
        count = getattr(self.backend, "count_tokens", None)
        return await count(texts) if count is not None else None

    async def ping(self) -> str:
        return await self.backend.ping()

    async def stats(self) -> dict[str, int]:
        """Model calls and texts embedded so far: texts/batches is the achieved batch size."""
        return {"batches": self._batches, "texts": self._texts}

    async def aclose(self) -> None:
        await self._batcher.aclose()
        await self.backend.aclose()
