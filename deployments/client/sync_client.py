"""The blocking client, on httpx.Client. Every method is one `Call` (calls.py), run with the shared retry policy."""

from __future__ import annotations

import time
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


class GraphRAGClient:
    """graphrag-serve's API, typed: each method returns the API's pydantic model, raises an `APIStatusError`
    subclass for a 4xx/5xx, and retries 429 and 503 (honouring `Retry-After`) up to `max_retries` times.

        with GraphRAGClient("http://127.0.0.1:8000", api_key="...") as client:
            print(client.answer("Who founded Acme?", collection="docs").answer)
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        http_client: httpx.Client | None = None,
    ):
        url, headers = calls.settings(base_url, api_key)
        self.max_retries, self.max_retry_wait = max_retries, max_retry_wait
        self._owned = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._url, self._headers = url, headers

    def _run(self, call: Call[M]) -> M:
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.request(
                    call.method, self._url + call.path, json=call.body, params=call.params, headers=self._headers
                )
            except httpx.TransportError as exc:
                raise APIConnectionError(f"{call.method} {self._url}{call.path}: {type(exc).__name__}: {exc}") from exc
            delay = calls.retry_delay(response, attempt, self.max_retry_wait)
            if delay is None or attempt == self.max_retries:
                return call.parse(response)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def retrieve(self, query: str, **options: Unpack[RetrieveOptions]) -> RetrieveResponse:
        return self._run(calls.retrieve(query, options))

    def answer(self, query: str, **options: Unpack[RetrieveOptions]) -> AnswerResponse:
        return self._run(calls.answer(query, options))

    def ingest(
        self, documents: Iterable[Document | Mapping[str, Any]], collection: str = DEFAULT_COLLECTION
    ) -> IngestResponse:
        return self._run(calls.ingest(documents, collection))

    def delete_document(self, doc_id: str, collection: str = DEFAULT_COLLECTION) -> DeleteResponse:
        return self._run(calls.delete_document(doc_id, collection))

    def delete_collection(self, collection: str) -> CollectionDeleteResponse:
        return self._run(calls.delete_collection(collection))

    def collections(self) -> CollectionList:
        return self._run(calls.collections())

    def collection_stats(self, collection: str = DEFAULT_COLLECTION) -> CollectionStats:
        return self._run(calls.collection_stats(collection))

    def documents(
        self, collection: str = DEFAULT_COLLECTION, limit: int = 100, cursor: str | None = None
    ) -> DocumentPage:
        return self._run(calls.documents(collection, limit, cursor))

    def verify(self, collection: str = DEFAULT_COLLECTION) -> VerifyResponse:
        return self._run(calls.verify(collection))

    def repair(self, collection: str = DEFAULT_COLLECTION) -> RepairResponse:
        return self._run(calls.repair(collection))

    def graph_entity(self, name: str, collection: str = DEFAULT_COLLECTION, hops: int = 1) -> EntityResponse:
        return self._run(calls.graph_entity(name, collection, hops))

    def graph_query(
        self, query: str, parameters: Mapping[str, Any] | None = None, max_rows: int | None = None
    ) -> GraphQueryResponse:
        return self._run(calls.graph_query(query, parameters, max_rows))

    def embeddings(self, texts: str | list[str], model: str = "all-MiniLM-L6-v2") -> EmbeddingList:
        return self._run(calls.embeddings(texts, model))

    def ready(self) -> ReadyResponse:
        return self._run(calls.ready())

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
