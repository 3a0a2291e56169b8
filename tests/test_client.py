"""The typed Python client (deployments/client): against the ingress app's real routes over in-process stages
(async), and its retry policy against scripted answers (sync and async)."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from pydantic import ValidationError

from deployments.client import (
    APIConnectionError,
    AsyncGraphRAGClient,
    GraphRAGClient,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    async_client,
    sync_client,
)
from deployments.ingress.auth import hash_key
from deployments.models import (
    AnswerResponse,
    CollectionDeleteResponse,
    IngestResponse,
    RetrieveResponse,
)
from tests.fakes import FakeStages
from tests.ingress_harness import ingress_client

AUTH = {
    "auth": {
        "keys": [
            {"sha256": hash_key("reader"), "scopes": ["read"]},
            {"sha256": hash_key("admin"), "scopes": ["read", "write", "admin"]},
        ]
    }
}


def over(client: httpx.AsyncClient, key: str | None = None) -> AsyncGraphRAGClient:
    return AsyncGraphRAGClient("http://ingress", api_key=key, http_client=client)


async def test_the_async_client_returns_the_apis_models(monkeypatch):
    fake = FakeStages()
    with ingress_client(fake.stages(), monkeypatch, AUTH) as http:
        api = over(http, "admin")
        ingested = await api.ingest([{"id": "d1", "text": "Alice founded Acme."}], collection="c")
        assert isinstance(ingested, IngestResponse) and ingested.documents == 1 and fake.stored["vector"] == {"d1"}
        found = await api.retrieve("who founded Acme?", collection="c", top_k=2, mode="hybrid+graph")
        assert isinstance(found, RetrieveResponse) and len(found.hits) == 2 and found.mode == "hybrid+graph"
        answered = await api.answer("who founded Acme?", collection="c")
        assert isinstance(answered, AnswerResponse) and answered.citations[0].n == 1
        assert [c.collection for c in (await api.collections()).collections] == ["a", "b"]
        assert (await api.collection_stats("c")).points == 1
        assert [d.doc_id for d in (await api.documents("c")).documents] == ["d1"]
        vectors = await api.embeddings(["one", "two"])
        assert [d.embedding for d in vectors.data] == [[1.0, 0.0], [1.0, 0.0]]
        assert (await api.delete_document("d1", collection="c")).points == 1
        fake.stored["vector"].add("d2")
        dropped = await api.delete_collection("c")
        assert isinstance(dropped, CollectionDeleteResponse) and dropped.points == 1
        ready = await api.ready()  # 503 (FakeStages' graph is down) still has a ReadyResponse body
        assert ready.ready is False and ready.stages["graph"].ok is False


async def test_the_async_client_raises_typed_errors_and_sends_nothing_invalid(monkeypatch):
    fake = FakeStages()
    with ingress_client(fake.stages(), monkeypatch, AUTH) as http:
        with pytest.raises(PermissionDeniedError) as refused:
            await over(http, "reader").ingest([{"id": "d1", "text": "t"}], collection="c")
        assert refused.value.status_code == 403 and "'write' scope" in refused.value.detail
        with pytest.raises(NotFoundError) as missing:
            await over(http, "admin").delete_collection("never-made")
        assert "does not exist" in missing.value.detail
        with pytest.raises(UnprocessableEntityError):
            await over(http, "admin").delete_collection("no spaces allowed")
        with pytest.raises(ValidationError):  # checked with the server's own model, before sending
            await over(http, "admin").retrieve("q", top_k=0)
        assert fake.stored == {"vector": set(), "graph": set()}


def scripted(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    return httpx.MockTransport(handler), seen


OK = {"collections": []}


def test_the_sync_client_retries_429_and_503_honouring_retry_after(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(sync_client.time, "sleep", waits.append)
    http_date = email.utils.formatdate(time.time() + 3, usegmt=True)
    transport, seen = scripted(
        httpx.Response(503, json={"detail": "graph stage unavailable", "stage": "graph"}, headers={"Retry-After": "2"}),
        httpx.Response(429, json={"detail": "overloaded"}, headers={"Retry-After": http_date}),
        httpx.Response(503, json={"detail": "again"}),  # no Retry-After: back-off
        httpx.Response(200, json=OK),
    )
    with GraphRAGClient("http://server", api_key="k", http_client=httpx.Client(transport=transport)) as api:
        assert api.collections().collections == []
    assert len(seen) == 4 and all(r.headers["authorization"] == "Bearer k" for r in seen)
    assert waits[0] == 2.0 and 1.5 < waits[1] <= 3.0 and waits[2] == 2.0  # 0.5 * 2**2


def test_the_sync_client_gives_up_with_the_last_error(monkeypatch):
    monkeypatch.setattr(sync_client.time, "sleep", lambda s: None)
    transport, seen = scripted(
        *[httpx.Response(503, json={"detail": "vector stage unavailable", "stage": "vector"})] * 3
    )
    api = GraphRAGClient("http://server", http_client=httpx.Client(transport=transport), max_retries=2)
    with pytest.raises(ServiceUnavailableError) as failed:
        api.collections()
    assert len(seen) == 3 and failed.value.stage == "vector"
    transport, seen = scripted(httpx.Response(404, json={"detail": "no"}), httpx.Response(200, json=OK))
    with pytest.raises(NotFoundError):  # a 404 is final: never retried
        GraphRAGClient("http://server", http_client=httpx.Client(transport=transport)).collections()
    assert len(seen) == 1


async def test_the_async_client_retries_too_and_waits_no_longer_than_allowed(monkeypatch):
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(async_client.asyncio, "sleep", sleep)
    transport, seen = scripted(
        httpx.Response(429, json={"detail": "busy"}, headers={"Retry-After": "600"}), httpx.Response(200, json=OK)
    )
    api = AsyncGraphRAGClient("http://server", http_client=httpx.AsyncClient(transport=transport), max_retry_wait=5)
    assert (await api.collections()).collections == [] and waits == [5] and len(seen) == 2
    transport, _ = scripted(httpx.Response(429, json={"detail": "busy"}, headers={"Retry-After": "0"}))
    with pytest.raises(RateLimitError):
        await AsyncGraphRAGClient(
            "http://server", http_client=httpx.AsyncClient(transport=transport), max_retries=0
        ).collections()


def test_an_unreachable_server_is_a_connection_error():
    with (
        GraphRAGClient("http://127.0.0.1:9", timeout=2) as api,
        pytest.raises(APIConnectionError, match="ConnectError"),
    ):
        api.collections()  # the discard port: nothing listens


def test_url_and_key_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("GRAPHRAG_URL", "http://from-env:1234/")
    monkeypatch.setenv("GRAPHRAG_API_KEY", "env-key")
    transport, seen = scripted(httpx.Response(200, json=OK))
    GraphRAGClient(http_client=httpx.Client(transport=transport)).collections()
    assert (
        str(seen[0].url) == "http://from-env:1234/v1/collections"
        and seen[0].headers["authorization"] == "Bearer env-key"
    )


def test_graphrag_ingest_sends_its_batches_through_the_client(monkeypatch, tmp_path):
    """The CLI's batch: a 503 is waited out by the client, a lost connection retried by the CLI, a 422 is final."""
    from deployments.cli import ingest as cli

    monkeypatch.setattr(sync_client.time, "sleep", lambda s: None)
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    done = {"collection": "c", "documents": 1, "chunks": 1, "entities": 0, "relations": 0, "timings": {}}
    answers = [
        httpx.Response(503, json={"detail": "busy", "stage": "graph"}),
        httpx.ConnectError("reset"),
        httpx.Response(200, json=done),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = GraphRAGClient("http://server", http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    report = cli.ingest(
        client, "c", [{"id": "d1", "text": "Alice founded Acme."}], cli.IngestState(None), progress=False
    )
    assert report.sent == 1 and report.chunks == 1 and len(seen) == 3
    assert {r.url.path for r in seen} == {"/v1/ingest"}

    refused = GraphRAGClient(
        "http://server",
        http_client=httpx.Client(
            transport=httpx.MockTransport(
                lambda r: httpx.Response(422, json={"detail": [{"loc": ["body", "documents"], "msg": "bad"}]})
            )
        ),
    )
    state = cli.IngestState(tmp_path / "state.json")
    with pytest.raises(cli.IngestError, match="answered 422"):
        cli.ingest(refused, "c", [{"id": "d1", "text": "Alice founded Acme."}], state, progress=False)
    assert state.hashes == {}  # nothing recorded as ingested
