"""LLM extraction as a provider race, against local OpenAI-protocol servers (test doubles scripted per request)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from deployments.config import ExtractionConfig, ExtractionProvider
from deployments.errors import StageError
from deployments.graph.extraction.llm import (
    LLMExtractor,
    LLMGraph,
    make_extractor,
    normalize,
    offline_extractor,
    parse_reply,
)
from deployments.graph.extraction.offline import extract as offline_extract
from deployments.graph.extraction.spacy import SpacyExtractor
from deployments.graph.service import GraphService
from deployments.models import Chunk
from tests.openai_server import OpenAIProtocolServer

CHUNK = Chunk(chunk_id="d#0", doc_id="d", index=0, text="Alice Smith founded Acme Corp in Paris.")
VALID = json.dumps({
    "entities": [{"name": "Alice Smith", "type": "PERSON"}, {"name": "Acme Corp", "type": "ORG"}, {"name": "Paris", "type": "city"}],
    "relations": [{"source": "Alice Smith", "target": "Acme Corp", "type": "founded"},
                  {"source": "Acme Corp", "target": "Paris", "type": "based in"}],
})  # fmt: skip


@pytest.fixture
def servers():
    with OpenAIProtocolServer() as a, OpenAIProtocolServer() as b, OpenAIProtocolServer() as c:
        yield a, b, c


def provider(server: OpenAIProtocolServer, name: str, **kw) -> ExtractionProvider:
    return ExtractionProvider(name=name, base_url=server.base_url, api_key="k", model="m", **kw)


async def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_valid_provider_wins_slow_one_cancelled_invalid_one_repaired(servers):
    slow, invalid, valid = servers
    slow.fault("chat", delay=30, content=VALID)
    invalid.fault("chat", times=2, content='{"entities": [{"name": "Alice"')  # truncated JSON, twice
    valid.fault("chat", delay=0.5, content=VALID)  # after the invalid one has used its repair
    config = ExtractionConfig(
        providers=[provider(slow, "slow"), provider(invalid, "invalid"), provider(valid, "valid")]
    )
    extractor = LLMExtractor(config)
    try:
        result = await extractor(CHUNK)
    finally:
        await extractor.aclose()

    assert result.extractor == "valid"
    assert result.failures["slow"] == "cancelled: valid won the race"
    assert result.failures["invalid"].startswith("invalid JSON after one repair attempt")
    assert {e.key: e.type for e in result.entities} == {"alice smith": "PERSON", "acme corp": "ORG", "paris": "GPE"}
    assert {(r.source, r.target, r.type) for r in result.relations} == {
        ("alice smith", "acme corp", "FOUNDED"),
        ("acme corp", "paris", "BASED_IN"),
    }
    # All three started concurrently: each server saw its first request before the winner answered.
    firsts = [s.requests("chat")[0].t for s in servers]
    assert max(firsts) - min(firsts) < 0.5
    # The slow provider saw its client go away: the race cancelled it instead of waiting 30 s.
    assert await wait_for(lambda: slow.requests("chat")[0].disconnected), slow.requests("chat")
    # The repair request carried the raw invalid reply and the validation error.
    first, repair = invalid.requests("chat")
    messages = repair.body["messages"]
    assert messages[-2] == {"role": "assistant", "content": '{"entities": [{"name": "Alice"'}
    assert (
        "not valid for the required JSON schema" in messages[-1]["content"]
        and "json" in messages[-1]["content"].lower()
    )
    assert first.body["response_format"] == {"type": "json_object"}


async def test_repair_attempt_can_succeed(servers):
    server = servers[0]
    server.add_faults("chat", [])
    server.fault("chat", content='```json\n{"relations": []}\n```')  # valid JSON, but no entities field
    server.fault("chat", content=VALID)
    extractor = LLMExtractor(ExtractionConfig(providers=[provider(server, "only")]))
    try:
        result = await extractor(CHUNK)
    finally:
        await extractor.aclose()
    assert result.extractor == "only" and result.failures == {} and len(result.entities) == 3
    repair = server.requests("chat")[1].body["messages"][-1]["content"]
    assert "entities: Field required" in repair


async def test_every_provider_failing_falls_back_to_offline(servers):
    a, b, _ = servers
    a.fault("chat", status=500)
    b.fault("chat", content=json.dumps({"entities": [], "relations": []}))
    config = ExtractionConfig(providers=[provider(a, "a"), provider(b, "b")], min_entities=1)
    extractor = LLMExtractor(config)
    try:
        result = await extractor(CHUNK)
        assert result.extractor == "offline"
        assert result.failures["a"].startswith("HTTP 500")
        assert "below the minimum" in result.failures["b"]
        assert result.entities == offline_extractor(config)(CHUNK).entities  # graph.extraction.offline: spaCy

        strict = LLMExtractor(config.model_copy(update={"fallback_offline": False}))
        a.fault("chat", status=500)
        b.fault("chat", invalid_json=True)  # the HTTP body itself is not JSON
        with pytest.raises(StageError, match="failed on every provider"):
            await strict(CHUNK)
        await strict.aclose()
    finally:
        await extractor.aclose()


async def test_minimum_relations_and_timeout_are_failures(servers):
    a, b, _ = servers
    a.fault("chat", content=json.dumps({"entities": [{"name": "Alice Smith"}]}))
    b.fault("chat", delay=5, content=VALID)
    # 1.5 s, not less: on a loaded 2-core machine a shorter timeout fired before b had even recorded the request.
    config = ExtractionConfig(providers=[provider(a, "a"), provider(b, "b", timeout_s=1.5)], min_relations=1)
    extractor = LLMExtractor(config)
    try:
        result = await extractor(CHUNK)
    finally:
        await extractor.aclose()
    assert result.extractor == "offline"
    assert "1 entities and 0 relations" in result.failures["a"]
    assert result.failures["b"] == "no valid reply within 1.5s"
    assert await wait_for(lambda: b.requests("chat")[0].disconnected)


def test_normalization_merges_types_and_drops_dangling_relations():
    graph = LLMGraph.model_validate({
        "entities": [
            {"name": "  Acme   Corp ", "type": "other"}, {"name": "ACME CORP.", "type": "Band"}, {"name": "Bob", "type": "x`y"},
            {"name": "the", "type": "PERSON"}, {"name": "  ", "type": "PERSON"},
        ],
        "relations": [
            {"source": "acme corp", "target": "bob", "type": "works for`]->(x) DETACH DELETE x //"},
            {"source": "Acme Corp", "target": "Bob", "type": "works-for ]->(x) detach delete x"},
            {"source": "Bob", "target": "Carol", "type": "knows"},
            {"source": "Bob", "target": "BOB", "type": "is"},
            {"source": "Bob", "target": "Acme Corp", "type": "2nd ÉTAGE"},
            {"source": "Bob", "target": "Acme Corp", "type": "```"},
        ],
    })  # fmt: skip
    ex = normalize(graph, "c#0", ExtractionConfig())
    assert [(e.key, e.name, e.type) for e in ex.entities] == [
        ("acme corp", "Acme Corp", "ORG"),
        ("bob", "Bob", "OTHER"),
    ]
    types = [r.type for r in ex.relations]
    assert types == ["WORKS_FOR_X_DETACH_DELETE_X", "R_2ND_TAGE", "RELATED_TO"]
    assert ex.relations[0].weight == 2.0  # the two spellings merged
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", t) for t in types)
    assert ex.dropped_relations == 2  # Carol is no entity; Bob-BOB is a self-loop


def test_parse_reply_reports_what_is_wrong():
    assert parse_reply('```json\n{"entities": []}\n```').entities == []
    with pytest.raises(ValueError, match="entities"):
        parse_reply('{"relations": []}')
    with pytest.raises(ValueError):
        parse_reply("Sure! Here is the graph:")


def test_offline_is_the_default():
    assert isinstance(make_extractor(ExtractionConfig()), SpacyExtractor)  # spaCy + technical names
    assert make_extractor(ExtractionConfig(offline="patterns")) is offline_extract
    with pytest.raises(ValueError, match="distinct"):
        LLMExtractor(ExtractionConfig(providers=[ExtractionProvider(base_url="http://127.0.0.1:1/v1", model="m")] * 2))


async def test_graph_service_stores_the_winning_extraction(servers, graph_config, request):  # noqa: F811
    server = servers[0]
    server.fault("chat", times=3, content=VALID)
    config = graph_config.model_copy(update={"extraction": ExtractionConfig(providers=[provider(server, "llm")])})
    collection = request.node.name[:64]
    service = GraphService(config, config.bolt_uri)
    try:
        written = await service.upsert(collection, [CHUNK])
        assert written["extractors"] == {"llm": 1} and written["entities"] == 3 and written["relations"] == 2
        result = await service.search(collection, "Who founded Acme Corp?", 1, 5)
        types = {"acme corp": "ORG", "alice smith": "PERSON", "paris": "GPE"}
        found = {n.id: n.type for n in result.subgraph.nodes}
        assert found["acme corp"] == "ORG" and found.items() <= types.items()  # the extraction's types
        # The search's subgraph ties entities its chunks share; the relations' own types are the store's (explorer).
        acme = await service.entity(collection, "Acme Corp", hops=1)
        assert {n.id: n.type for n in acme.neighbours} == {k: v for k, v in types.items() if k != "acme corp"}
        assert {r.type for r in acme.relations} == {"FOUNDED", "BASED_IN"}
        assert await service.delete_documents(collection, ["d"]) == 1
    finally:
        await service.aclose()
