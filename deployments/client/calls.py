"""What each API call sends and what it returns, apart from how it is sent: the sync and the async client run the
same `Call`s (one definition of every route's request), and share the retry policy."""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from deployments.client.errors import error_for
from deployments.ingress.embeddings_api import EmbeddingList
from deployments.models import (
    AnswerRequest,
    AnswerResponse,
    CollectionDeleteResponse,
    CollectionList,
    CollectionStats,
    DeleteResponse,
    Document,
    DocumentPage,
    EntityResponse,
    GraphQueryRequest,
    GraphQueryResponse,
    IngestRequest,
    IngestResponse,
    ReadyResponse,
    RepairResponse,
    RetrievalMode,
    RetrieveRequest,
    RetrieveResponse,
    Scalar,
    VerifyResponse,
)

M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
RETRIED = frozenset({429, 503})  # overloaded or a stage briefly away: the server says when to come back


class RetrieveOptions(TypedDict, total=False):
    """The optional fields of RetrieveRequest / AnswerRequest (deployments/models.py)."""

    collection: str
    top_k: int
    max_hops: int
    mode: RetrievalMode
    rerank: bool
    filter: dict[str, Scalar]


@dataclass(frozen=True)
class Call(Generic[M]):
    method: str
    path: str
    returns: type[M]
    body: Any = None
    params: Mapping[str, Any] | None = None
    ok: frozenset[int] = frozenset({200})  # statuses whose body is a `returns` (readyz: 503 too)

    def parse(self, response: httpx.Response) -> M:
        if response.status_code not in self.ok:
            raise error_for(response)
        return self.returns.model_validate_json(response.content)


def settings(base_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    """The server's URL and the auth header: the arguments, else $GRAPHRAG_URL and $GRAPHRAG_API_KEY."""
    key = api_key if api_key is not None else os.environ.get("GRAPHRAG_API_KEY")
    url = base_url or os.environ.get("GRAPHRAG_URL") or DEFAULT_URL
    return url.rstrip("/"), ({"Authorization": f"Bearer {key}"} if key else {})


def retry_delay(response: httpx.Response, attempt: int, max_wait: float) -> float | None:
    """Seconds to wait before retrying, None when `response` is final. `Retry-After` (seconds or an HTTP date)
    when the server sends it, else exponential back-off from 0.5 s; never more than `max_wait`."""
    if response.status_code not in RETRIED:
        return None
    header = response.headers.get("retry-after", "").strip()
    wait: float | None = None
    if header:
        try:
            wait = float(header)
        except ValueError:
            when = email.utils.parsedate_to_datetime(header) if header else None
            wait = when.timestamp() - time.time() if when is not None else None
    if wait is None:
        wait = 0.5 * 2**attempt
    return min(max(wait, 0.0), max_wait)


def _path(template: str, *parts: str) -> str:
    return template.format(*(quote(p, safe="/") for p in parts))


def _request_body(model: type[BaseModel], **fields: Any) -> dict:
    """The request validated here with the server's own model (a bad value raises pydantic's ValidationError
    before anything is sent), as JSON with only the fields given."""
    return model.model_validate(fields).model_dump(mode="json", exclude_unset=True)


def retrieve(query: str, options: RetrieveOptions) -> Call[RetrieveResponse]:
    return Call("POST", "/v1/retrieve", RetrieveResponse, _request_body(RetrieveRequest, query=query, **options))


def answer(query: str, options: RetrieveOptions) -> Call[AnswerResponse]:
    return Call("POST", "/v1/answer", AnswerResponse, _request_body(AnswerRequest, query=query, **options))


def ingest(documents: Iterable[Document | Mapping[str, Any]], collection: str) -> Call[IngestResponse]:
    docs = [d.model_dump(exclude_unset=True) if isinstance(d, Document) else dict(d) for d in documents]
    return Call(
        "POST", "/v1/ingest", IngestResponse, _request_body(IngestRequest, collection=collection, documents=docs)
    )


def delete_document(doc_id: str, collection: str) -> Call[DeleteResponse]:
    return Call("DELETE", _path("/v1/documents/{}", doc_id), DeleteResponse, params={"collection": collection})


def delete_collection(collection: str) -> Call[CollectionDeleteResponse]:
    return Call("DELETE", _path("/v1/collections/{}", collection), CollectionDeleteResponse)


def collections() -> Call[CollectionList]:
    return Call("GET", "/v1/collections", CollectionList)


def collection_stats(collection: str) -> Call[CollectionStats]:
    return Call("GET", _path("/v1/collections/{}", collection), CollectionStats)


def documents(collection: str, limit: int, cursor: str | None) -> Call[DocumentPage]:
    params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
    return Call("GET", _path("/v1/collections/{}/documents", collection), DocumentPage, params=params)


def verify(collection: str) -> Call[VerifyResponse]:
    return Call("GET", _path("/v1/collections/{}/verify", collection), VerifyResponse)


def repair(collection: str) -> Call[RepairResponse]:
    return Call("POST", _path("/v1/collections/{}/repair", collection), RepairResponse)


def graph_entity(name: str, collection: str, hops: int) -> Call[EntityResponse]:
    return Call(
        "GET", _path("/v1/graph/entities/{}", name), EntityResponse, params={"collection": collection, "hops": hops}
    )


def graph_query(query: str, parameters: Mapping[str, Any] | None, max_rows: int | None) -> Call[GraphQueryResponse]:
    fields: dict[str, Any] = {"query": query, **({"parameters": dict(parameters)} if parameters else {})}
    if max_rows is not None:
        fields["max_rows"] = max_rows
    return Call("POST", "/v1/graph/query", GraphQueryResponse, _request_body(GraphQueryRequest, **fields))


def embeddings(texts: str | list[str], model: str) -> Call[EmbeddingList]:
    return Call("POST", "/v1/embeddings", EmbeddingList, {"input": texts, "model": model, "encoding_format": "float"})


def ready() -> Call[ReadyResponse]:
    return Call("GET", "/readyz", ReadyResponse, ok=frozenset({200, 503}))
