"""Embedder stage: turns texts into unit-length vectors, in-process (MiniLM) or via an OpenAI-compatible endpoint.

EmbedderService (service.py) batches texts from concurrent calls into one model call (batching.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

import numpy as np

from deployments.config import EmbedderConfig
from deployments.embedder.local_model import available_cpus, resolve_model_path
from deployments.embedder.onnx_backend import OnnxEmbedder
from deployments.errors import StageError, StageUnavailable
from deployments.net import redact_url

log = logging.getLogger(__name__)

STAGE = "embed"
_OPENAI_MAX_INPUTS = 2048  # the OpenAI embeddings API rejects larger `input` lists


@runtime_checkable
class EmbeddingBackend(Protocol):
    name: str

    async def embed(self, texts: list[str]) -> list[list[float]]: ...

    async def dimension(self) -> int: ...

    async def warmup(self) -> None: ...

    async def ping(self) -> str: ...

    async def aclose(self) -> None: ...


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise StageError(STAGE, "the embedding endpoint returned an all-zero vector")
    return vectors / norms


class SentenceTransformerEmbedder:
    """sentence-transformers in this process, loaded offline; encodes off the event loop."""

    def __init__(self, config: EmbedderConfig):
        self.config = config
        self.name = f"sentence-transformers:{config.model_name}"
        self._model: Any = None
        self._load_lock = asyncio.Lock()
        # Loading and every encode run on this one thread, off the event loop: torch applies its thread-count
        # setting per OS thread, and concurrent encodes would only fight over the same few cores.
        self._thread: ThreadPoolExecutor | None = None

    def _load(self) -> Any:
        # Never reach for the hub: the weights ship in a pip package.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a tqdm bar per replica start is log noise
        # Ray pins OMP_NUM_THREADS=1 in actors without num_cpus; set the pool size explicitly instead.
        torch.set_num_threads(self.config.num_threads or available_cpus())
        model = SentenceTransformer(resolve_model_path(self.config.model_name))
        model.eval()
        return model

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    async def _get_model(self) -> Any:
        if self._model is None:
            async with self._load_lock:
                if self._model is None:
                    self._model = await self._run(self._load)
                    log.info("loaded %s (%d-d)", self.name, self._model.get_embedding_dimension())
        return self._model

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = await self._get_model()
        vectors = await self._run(
            model.encode,
            texts,
            batch_size=self.config.max_batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False).tolist()

    async def dimension(self) -> int:
        return int((await self._get_model()).get_embedding_dimension())

    async def count_tokens(self, texts: list[str]) -> int:
        model = await self._get_model()
        return int((await self._run(model.tokenize, texts))["attention_mask"].sum())

    async def warmup(self) -> None:
        await self.embed(["warm up"])  # loads the model and runs the first (slowest) forward pass

    async def ping(self) -> str:
        return f"{self.name} ({await self.dimension()}-d, in-process)"

    async def aclose(self) -> None:
        self._model = None
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None


class OpenAIEmbedder:
    """An OpenAI-compatible `/v1/embeddings` endpoint; vectors are normalized here, whatever the server does."""

    def __init__(self, config: EmbedderConfig):
        if not config.openai_base_url:
            raise ValueError("OpenAIEmbedder needs embedder.openai_base_url")
        self.config = config
        self.name = f"openai:{config.openai_model}@{redact_url(config.openai_base_url)}"
        self._client: Any = None
        self._dimension: int | None = None
        self.breaker = config.breaker.make(STAGE, self.name, probe=lambda: self._post(["ping"]))

    def _get_client(self) -> Any:
        if self._client is None:
            from deployments.openai_client import openai_client

            self._client = openai_client(
                self.config.openai_base_url or "",
                self.config.openai_api_key,
                self.config.timeout_s,
                self.config.max_retries,
            )
        return self._client

    async def _request(self, texts: list[str]) -> np.ndarray:
        return await self.breaker.call(lambda: self._post(texts))

    async def _post(self, texts: list[str]) -> np.ndarray:
        import openai

        try:
            # "float" explicitly: the client defaults to base64, which many compatible servers lack.
            resp = await self._get_client().embeddings.create(
                model=self.config.openai_model, input=texts, encoding_format="float"
            )
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise StageUnavailable(STAGE, f"{self.name} unreachable: {type(exc).__name__}") from exc
        except openai.APIStatusError as exc:
            error = StageUnavailable if exc.status_code >= 500 or exc.status_code == 429 else StageError
            raise error(STAGE, f"{self.name} answered HTTP {exc.status_code}") from exc
        data = sorted(resp.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise StageError(STAGE, f"{self.name} returned {len(data)} embeddings for {len(texts)} texts")
        return np.asarray([d.embedding for d in data], dtype=np.float32)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        step = min(self.config.max_batch_size, _OPENAI_MAX_INPUTS)
        parts = [await self._request(texts[i : i + step]) for i in range(0, len(texts), step)]
        vectors = _normalize(np.concatenate(parts))
        dim = int(vectors.shape[1])
        if self._dimension is None:
            self._dimension = dim
        elif dim != self._dimension:
            raise StageError(STAGE, f"{self.name} changed dimension from {self._dimension} to {dim}")
        return vectors.tolist()

    async def dimension(self) -> int:
        if self._dimension is None:
            await self.embed(["dimension probe"])
        assert self._dimension is not None
        return self._dimension

    async def warmup(self) -> None:
        # The endpoint may come up after this replica; the dimension is discovered on first use.
        return None

    async def ping(self) -> str:
        await self.embed(["ping"])
        return f"{self.name} ({self._dimension}-d)"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def make_embedder(config: EmbedderConfig) -> EmbeddingBackend:
    """The one place that picks the backend: an OpenAI-compatible endpoint when configured, else MiniLM in-process
    on `embedder.backend` (ONNX Runtime or torch)."""
    if config.openai_base_url:
        return OpenAIEmbedder(config)
    if config.backend == "onnx":
        return OnnxEmbedder(config)
    return SentenceTransformerEmbedder(config)
