"""The MCP server at /mcp, driven by the official `mcp` Python client (streamable HTTP) over the ingress app's
real routes and guards, the pipeline over in-process stages (no Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from deployments.errors import CollectionNotFound
from deployments.ingress.auth import hash_key
from deployments.ingress.http_app import app
from deployments.models import (
    AnswerResponse,
    CollectionList,
    EntityResponse,
    GraphNode,
    RetrieveResponse,
)
from tests.fakes import FakeStages
from tests.ingress_harness import ingress_client

KEYS = {
    "reader": {"scopes": ["read"]},
    "writer": {"scopes": ["read", "write"]},
    "only-a": {"scopes": ["read"], "collections": ["a"]},
}
AUTH = {"auth": {"keys": [{"sha256": hash_key(name), "name": name, **grant} for name, grant in KEYS.items()]}}


class Stages(FakeStages):
    async def entity(self, collection, name, hops=1):
        node = GraphNode(id="alice smith", name="Alice Smith", type="PERSON")
        return EntityResponse(
            collection=collection,
            entity=node,
            doc_ids=["d1"],
            chunk_ids=["d1#0"],
            neighbours=[],
            edges=[],
            relations=[],
        )

    def stages(self):
        stages = super().stages()
        stages.graph.entity = self.entity
        return stages


@asynccontextmanager
async def mcp_session(key: str | None) -> AsyncIterator[ClientSession]:
    """The official client's streamable-HTTP transport, its requests served in-process by the ingress app."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1", headers=headers, timeout=30
    )
    async with (
        http,
        streamable_http_client("http://127.0.0.1/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@pytest.fixture
def stages(monkeypatch):
    fake = Stages()
    with ingress_client(fake.stages(), monkeypatch, AUTH):  # installs the app's guards and the replica
        yield fake


def text(result) -> str:
    return "\n".join(c.text for c in result.content)


async def test_tools_are_listed_with_the_apis_schemas(stages):
    async with mcp_session("reader") as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == {"retrieve", "answer", "graph_entity", "list_collections", "ingest"}
    retrieve = tools["retrieve"].input_schema
    assert retrieve["required"] == ["query"] and retrieve["properties"]["top_k"]["anyOf"][0]["maximum"] == 100
    assert "citations" in tools["answer"].output_schema["properties"]
    assert tools["retrieve"].annotations.read_only_hint and not tools["ingest"].annotations.read_only_hint


async def test_each_read_tool_answers_with_the_apis_result(stages):
    async with mcp_session("reader") as session:
        found = await session.call_tool("retrieve", {"query": "Who founded Acme?", "collection": "a", "top_k": 2})
        assert not found.is_error, text(found)
        hits = RetrieveResponse.model_validate(found.structured_content).hits
        assert len(hits) == 2 and text(found).startswith(f"[1] {hits[0].doc_id} ({hits[0].chunk_id}")

        answered = await session.call_tool("answer", {"query": "Who founded Acme?", "collection": "a"})
        answer = AnswerResponse.model_validate(answered.structured_content)
        assert answer.answer.startswith("Answer from the first passage [1]") and [c.n for c in answer.citations] == [
            1,
            2,
        ]
        assert answer.degraded == [] and text(answered).startswith(answer.answer)

        entity = await session.call_tool("graph_entity", {"name": "Alice Smith", "collection": "a"})
        assert EntityResponse.model_validate(entity.structured_content).doc_ids == ["d1"]

        listed = await session.call_tool("list_collections", {})
        assert [c.collection for c in CollectionList.model_validate(listed.structured_content).collections] == [
            "a",
            "b",
        ]


async def test_a_failed_stage_is_reported_in_degraded(stages):
    stages.fail["graph"] = ConnectionError("graph store unreachable")
    async with mcp_session("reader") as session:
        found = await session.call_tool("retrieve", {"query": "Who founded Acme?", "collection": "a"})
    assert not found.is_error
    assert [d["stage"] for d in found.structured_content["degraded"]] == ["graph"] and "degraded: graph" in text(found)


async def test_scopes_and_the_collection_allow_list_hold_and_change_nothing(stages):
    doc = {"collection": "a", "documents": [{"id": "d1", "text": "Alice founded Acme."}]}
    async with mcp_session("reader") as session:
        refused = await session.call_tool("ingest", doc)
        assert refused.is_error and "lacks the 'write' scope that the ingest tool needs" in text(refused)
    assert stages.stored == {"vector": set(), "graph": set()}
    async with mcp_session("only-a") as session:
        other = await session.call_tool("retrieve", {"query": "q", "collection": "b"})
        assert other.is_error and "may not access collection 'b'" in text(other)
        listed = await session.call_tool("list_collections", {})
        assert [c["collection"] for c in listed.structured_content["collections"]] == ["a"]
    async with mcp_session("writer") as session:
        ingested = await session.call_tool("ingest", doc)
        assert not ingested.is_error and ingested.structured_content["documents"] == 1
    assert stages.stored["vector"] == {"d1"}


@pytest.mark.parametrize(
    ("tool", "arguments", "says"),
    [
        ("retrieve", {}, "query: Field required"),
        ("retrieve", {"query": "q", "top_k": 0}, "top_k: Input should be greater than or equal to 1"),
        ("retrieve", {"query": "q", "top_k": "5"}, "top_k: Input should be a valid integer"),
        ("answer", {"query": "q", "collection": "../etc"}, "collection: String should match pattern"),
        ("graph_entity", {"name": "x", "hops": 9}, "hops: Input should be less than or equal to 3"),
        ("list_collections", {"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ("ingest", {"documents": []}, "documents: List should have at least 1 item"),
        ("no_such_tool", {}, "unknown tool 'no_such_tool'"),
    ],
)
async def test_a_bad_argument_is_a_clear_tool_error_and_runs_nothing(stages, tool, arguments, says):
    async with mcp_session("writer") as session:
        result = await session.call_tool(tool, arguments)
    assert result.is_error and says in text(result), text(result)
    assert stages.spans == {} and stages.stored == {"vector": set(), "graph": set()}


async def test_a_missing_collection_is_a_tool_error(stages):
    stages.fail["vector"] = CollectionNotFound("nope")  # what the vector stage raises for it
    async with mcp_session("reader") as session:
        result = await session.call_tool("retrieve", {"query": "q", "collection": "nope", "mode": "dense"})
    assert result.is_error and "collection 'nope' does not exist" in text(result)


async def test_no_key_or_a_wrong_one_never_reaches_the_tools(stages):
    for key in (None, "wrong"):
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1")
        async with http:
            resp = await http.post(
                "/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": f"Bearer {key}"} if key else {},
            )
        assert resp.status_code == 401


async def test_the_ingest_tool_waits_for_the_start_up_roll_back_like_the_route(stages):
    from ray import serve

    async def failed_recovery():
        raise ConnectionError("graph store unreachable during the roll-back")

    ingress = serve.get_replica_context().servable_object
    ingress.recovery = asyncio.ensure_future(failed_recovery())
    await asyncio.sleep(0)
    async with mcp_session("writer") as session:
        refused = await session.call_tool("ingest", {"collection": "a", "documents": [{"id": "d1", "text": "t."}]})
        found = await session.call_tool("retrieve", {"query": "q", "collection": "a"})  # reads do not wait for it
    assert refused.is_error and "a stage failed: ConnectionError: graph store unreachable" in text(refused), text(
        refused
    )
    assert not found.is_error and stages.stored == {"vector": set(), "graph": set()}
