"""GraphService.query / entity / schema against the real ArcadeDB Bolt server, and injection safety by construction."""

from __future__ import annotations

import ast
import inspect

import pytest

import deployments.graph.queries.explorer as graph_explorer
import deployments.graph.service as graph_service
import deployments.graph.store.retrieval as graph_retrieval
import deployments.graph.store.schema as graph_schema
import deployments.graph.store.session as graph_session
import deployments.graph.store.transactions as graph_transactions
import deployments.graph.store.writes as graph_writes
from deployments.errors import BadRequest, NotFound, StageUnavailable
from deployments.graph.extraction.llm import normalize_relation_type
from deployments.graph.service import GraphService
from deployments.graph.store.schema import SCHEMA
from deployments.models import Chunk
from tests.fakes import DOCS, INJECTIONS, WRITES, chunks_of, raw


@pytest.fixture
async def graph(graph_config):  # noqa: F811
    # The explorer over the typed graph (typed relations, aliases): the spaCy extractor, not the default patterns.
    config = graph_config.model_copy(
        update={"extraction": graph_config.extraction.model_copy(update={"offline": "spacy"})}
    )
    service = GraphService(config, graph_config.bolt_uri)
    yield service
    await service.aclose()


@pytest.fixture
def collection(request) -> str:
    return request.node.name.replace("[", "_").replace("]", "")[:64]


async def _fingerprint(graph_config) -> list:  # noqa: F811
    """Everything a write could change: node and relationship counts per label/type, and the schema."""
    nodes = await raw(graph_config, "MATCH (n) RETURN labels(n) AS l, count(n) AS n ORDER BY n")
    rels = await raw(graph_config, "MATCH ()-[r]->() RETURN type(r) AS t, count(r) AS n ORDER BY n")
    props = await raw(graph_config, "MATCH (n) WHERE n.x IS NOT NULL OR n.y IS NOT NULL RETURN count(n) AS n")
    return [sorted(map(str, nodes)), sorted(map(str, rels)), props]


async def test_read_query_with_parameters_rows_and_graph_values(graph, collection):
    await graph.upsert(collection, chunks_of(DOCS))
    result = await graph.query(
        "MATCH (a:Entity)-[r:RELATED]->(b:Entity) WHERE a.collection = $c RETURN a, r, b.key AS target ORDER BY target",
        {"c": collection},
    )
    assert result.columns == ["a", "r", "target"] and len(result.rows) == 3 and not result.truncated
    node, rel, target = result.rows[0]
    assert node["labels"] == ["Entity"] and node["properties"]["collection"] == collection
    # "Alice Smith founded Acme Corp": a relation typed by its verb, from subject to object
    assert rel["type"] == "RELATED" and rel["properties"]["type"] == "FOUND" and target == "acme corp"
    assert node["properties"]["key"] == "alice smith"


async def test_row_cap_truncates(graph_config):  # noqa: F811
    service = GraphService(graph_config.model_copy(update={"user_query_max_rows": 7}), graph_config.bolt_uri)
    try:
        capped = await service.query("UNWIND range(1, 100000) AS i RETURN i")
        assert [r[0] for r in capped.rows] == list(range(1, 8)) and capped.truncated and capped.row_cap == 7
        fewer = await service.query("UNWIND range(1, 100) AS i RETURN i", max_rows=3)
        assert len(fewer.rows) == 3 and fewer.row_cap == 3
        exact = await service.query("UNWIND range(1, 7) AS i RETURN i")
        assert len(exact.rows) == 7 and not exact.truncated
    finally:
        await service.aclose()


async def test_syntax_error_is_a_bad_request(graph):
    with pytest.raises(BadRequest, match="rejected the query"):
        await graph.query("MATCH (n RETURN n")


async def test_slow_query_hits_the_timeout(graph_config):  # noqa: F811
    service = GraphService(graph_config.model_copy(update={"user_query_timeout_s": 0.5}), graph_config.bolt_uri)
    try:
        with pytest.raises(StageUnavailable, match="within 0.5s"):
            await service.query(
                "UNWIND range(1, 3000) AS a UNWIND range(1, 3000) AS b WITH a, b WHERE a * b < 0 RETURN count(*)"
            )
    finally:
        await service.aclose()


@pytest.mark.parametrize("query", WRITES)
async def test_writes_are_refused_and_the_store_is_unchanged(graph, graph_config, query):  # noqa: F811
    before = await _fingerprint(graph_config)
    with pytest.raises(BadRequest, match="refused"):
        await graph.query(query)
    assert await _fingerprint(graph_config) == before


async def test_entity_neighbourhood_with_provenance(graph, collection):
    await graph.upsert(collection, chunks_of(DOCS))
    acme = await graph.entity(collection, "ACME corp")  # looked up by its normalized name
    assert acme.entity.id == "acme corp" and acme.doc_ids == ["d1", "d2"] and acme.chunk_ids == ["d1#0", "d2#0"]
    assert [(n.id, n.hops) for n in acme.neighbours] == [("alice smith", 1), ("bob jones", 1)]
    assert {(r.source, r.target, tuple(r.doc_ids), tuple(r.chunk_ids)) for r in acme.relations} == {
        ("alice smith", "acme corp", ("d1",), ("d1#0",)),  # typed relations keep their direction
        ("acme corp", "bob jones", ("d2",), ("d2#0",)),
    }
    two = await graph.entity(collection, "Alice Smith", hops=2)
    assert dict((n.id, n.hops) for n in two.neighbours) == {"acme corp": 1, "bob jones": 2}
    assert len(two.relations) == 1  # only the entity's own relation carries provenance
    with pytest.raises(NotFound):
        await graph.entity(collection, "Nobody Here")
    with pytest.raises(BadRequest):
        await graph.entity(collection, "?!")


async def test_entity_found_by_its_alias_lists_its_aliases(graph, collection):
    text = "Rudolph Giuliani was born in Brooklyn. Giuliani was elected mayor of New York City in 1993."
    await graph.upsert(collection, [Chunk(chunk_id="g#0", doc_id="g", index=0, text=text)])
    found = await graph.entity(collection, "Giuliani")  # the short form the chunk uses
    assert found.entity.id == "rudolph giuliani" and "giuliani" in found.entity.aliases
    variant = await graph.entity(collection, "Rudy Giuliani")  # a name variant no chunk writes
    assert variant.entity.id == "rudolph giuliani"
    assert ("rudolph giuliani", "BORN_IN", "brooklyn") in {(r.source, r.type, r.target) for r in found.relations}


async def test_entity_neighbourhood_is_bounded(graph_config, collection):  # noqa: F811
    service = GraphService(
        graph_config.model_copy(update={"entity_neighbours": 1, "max_edges": 1}), graph_config.bolt_uri
    )
    try:
        await service.upsert(collection, chunks_of(DOCS))
        acme = await service.entity(collection, "Acme Corp", hops=3)
        assert len(acme.neighbours) == 1 and len(acme.edges) == 1
    finally:
        await service.aclose()


@pytest.mark.parametrize("name", INJECTIONS + ["x`}) MATCH (n) DETACH DELETE n //", "Ｅｎｔｉｔｙ"])
async def test_hostile_entity_names_are_data(graph, graph_config, collection, name):  # noqa: F811
    await graph.upsert(collection, chunks_of(DOCS))
    before = await _fingerprint(graph_config)
    try:
        await graph.entity(collection, name)
    except (NotFound, BadRequest):
        pass
    assert await _fingerprint(graph_config) == before


async def test_schema_statements_are_idempotent(graph_config):  # noqa: F811
    # The embedded server ran them at start; running them again (a restart, a second replica) changes nothing.
    before = await raw(graph_config, "SHOW INDEXES")
    for statement in SCHEMA:
        await raw(graph_config, statement)
        await raw(graph_config, statement)
    after = await raw(graph_config, "SHOW INDEXES")
    assert sorted(i["name"] for i in after) == sorted(i["name"] for i in before)
    names = {tuple(i["properties"]) for i in after if i["labelsOrTypes"] in (["Entity"], ["Chunk"])}
    assert {("key", "collection"), ("id", "collection"), ("doc_id",)} <= names


@pytest.mark.parametrize(
    "raw_type",
    ["works for`]->(x) DETACH DELETE x //", "ＦＯＵＮＤＥＤ", "DЕLETE", "a\u200bb", "`", " ", "9lives", "x" * 500],
)
def test_relation_types_from_extraction_are_plain_identifiers(raw_type):
    t = normalize_relation_type(raw_type)
    assert t.isascii() and t.replace("_", "").isalnum() and t[0].isalpha() and len(t) <= 64


def test_query_text_interpolates_only_checked_constants():
    """By construction: every Cypher f-string of the graph stage interpolates only the schema's checked
    label/type constants; everything that comes from data travels as a parameter."""
    modules = (graph_service, graph_session, graph_transactions, graph_writes, graph_retrieval, graph_explorer)
    tree = ast.parse("\n".join(inspect.getsource(m) for m in modules))
    allowed = {"CHUNK", "ENTITY", "MENTIONS", "RELATED", "VERSION", "CHANGE"}
    cypher_fstrings = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if not any(word in text for word in ("MATCH", "MERGE", "CREATE", "UNWIND", "RETURN")):
                continue  # a log or error message
            cypher_fstrings += 1
            for value in node.values:
                if isinstance(value, ast.FormattedValue):
                    assert isinstance(value.value, ast.Name) and value.value.id in allowed, ast.unparse(value)
    assert cypher_fstrings >= 10
    for name in allowed:
        assert getattr(graph_schema, name).isidentifier()
