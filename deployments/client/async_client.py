"""The asyncio client, on httpx.AsyncClient: the same methods as GraphRAGClient (sync_client.py), awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel
from typing_extensions import Unpack

from deployments.client import calls
from deployments.client.calls import Call, RetrieveOptions
from deployments.client.errors import APIConnectionError
from deployments.ingress.embeddings_api import EmbeddingList
from deployments.models import (
    DEFAULT_COLLECTION,
    AnswerResponse,
    CollectionDeleteResponse,
    CollectionList,
    CollectionStats,
    DeleteResponse,
    Document,
    DocumentPage,
    EntityResponse,
    GraphQueryResponse,
    IngestResponse,
    ReadyResponse,
    RepairResponse,
    RetrieveResponse,
    VerifyResponse,
)

M = TypeVar("M", bound=BaseModel)


class AsyncGraphRAGClient:
    """graphrag-serve's API, typed: each method returns the API's pydantic model, raises an `APIStatusError`
    subclass for a 4xx/5xx, and retries 429 and 503 (honouring `Retry-After`) up to `max_retries` times.

        async with AsyncGraphRAGClient("http://127.0.0.1:8000", api_key="...") as client:
            print((await client.answer("Who founded Acme?", collection="docs")).answer)
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        http_client: httpx.AsyncClient | None = None,
    ):
        url, headers = calls.settings(base_url, api_key)
        self.max_retries, self.max_retry_wait = max_retries, max_retry_wait
        self._owned = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._url, self._headers = url, headers

    async def _run(self, call: Call[M]) -> M:
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._http.request(
                    call.method, self._url + call.path, json=call.body, params=call.params, headers=self._headers
                )
            except httpx.TransportError as exc:
                raise APIConnectionError(f"{call.method} {self._url}{call.path}: {type(exc).__name__}: {exc}") from exc
            delay = calls.retry_delay(response, attempt, self.max_retry_wait)
            if delay is None or attempt == self.max_retries:
                return call.parse(response)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def retrieve(self, query: str, **options: Unpack[RetrieveOptions]) -> RetrieveResponse:
        return await self._run(calls.retrieve(query, options))

    async def answer(self, query: str, **options: Unpack[RetrieveOptions]) -> AnswerResponse:
        return await self._run(calls.answer(query, options))

    async def ingest(
        self, documents: Iterable[Document | Mapping[str, Any]], collection: str = DEFAULT_COLLECTION
    ) -> IngestResponse:
        return await self._run(calls.ingest(documents, collection))

    async def delete_document(self, doc_id: str, collection: str = DEFAULT_COLLECTION) -> DeleteResponse:
        return await self._run(calls.delete_document(doc_id, collection))

    async def delete_collection(self, collection: str) -> CollectionDeleteResponse:
        return await self._run(calls.delete_collection(collection))

    async def collections(self) -> CollectionList:
        return await self._run(calls.collections())

    async def collection_stats(self, collection: str = DEFAULT_COLLECTION) -> CollectionStats:
        return await self._run(calls.collection_stats(collection))

    async def documents(
        self, collection: str = DEFAULT_COLLECTION, limit: int = 100, cursor: str | None = None
    ) -> DocumentPage:
        return await self._run(calls.documents(collection, limit, cursor))

    async def verify(self, collection: str = DEFAULT_COLLECTION) -> VerifyResponse:
        return await self._run(calls.verify(collection))

    async def repair(self, collection: str = DEFAULT_COLLECTION) -> RepairResponse:
        return await self._run(calls.repair(collection))

    async def graph_entity(self, name: str, collection: str = DEFAULT_COLLECTION, hops: int = 1) -> EntityResponse:
        return await self._run(calls.graph_entity(name, collection, hops))

    async def graph_query(
        self, query: str, parameters: Mapping[str, Any] | None = None, max_rows: int | None = None
    ) -> GraphQueryResponse:
        return await self._run(calls.graph_query(query, parameters, max_rows))

    async def embeddings(self, texts: str | list[str], model: str = "all-MiniLM-L6-v2") -> EmbeddingList:
        return await self._run(calls.embeddings(texts, model))

    async def ready(self) -> ReadyResponse:
        return await self._run(calls.ready())

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
