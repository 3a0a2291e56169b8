"""Documents that bring their one chunk's extraction (`Document.extraction`, the cluster bulk path's workers): stored
as given and not extracted again, over the real stores without Ray; bad extractions are a 422 with nothing written."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deployments.models import ChunkExtraction, Document
from tests.fakes import FAKE_DIM
from tests.ingress.test_bulk_import import TEXTS, Real, request, vector_of
from tests.ingress_harness import ingress_client

GIVEN = {
    "entities": [
        {"key": "alice smith", "name": "Alice Smith", "type": "PERSON", "lead": True},
        {"key": "acme corporation", "name": "Acme Corporation", "type": "ORG", "aliases": ["acme"]},
        {"key": "berlin", "name": "Berlin", "type": "GPE"},
    ],
    "relations": [
        {"source": "alice smith", "target": "acme corporation", "type": "FOUNDED"},
        {"source": "acme corporation", "target": "berlin", "type": "IN", "weight": 0.5},
    ],
    "extractor": "bulk-worker",
}


def with_extraction(doc_id: str = "acme", extraction: dict | None = None, **changes) -> dict:
    return {"id": doc_id, "text": TEXTS[doc_id], "vector": vector_of(0), "extraction": extraction or GIVEN, **changes}


@pytest.fixture
async def real(tmp_path, graph_config):
    stores = Real(tmp_path, graph_config)
    stores.extracted = []  # chunk ids the graph stage extracted itself

    def recording(chunk):
        stores.extracted.append(chunk.chunk_id)
        return stores.offline(chunk)

    stores.graph._extract = recording
    yield stores
    await stores.close()


async def test_a_given_extraction_is_stored_as_it_is_and_only_the_others_are_extracted(real):
    plain = Document(id="globex", text=TEXTS["globex"], vector=vector_of(1))
    resp = await real.pipeline().ingest(request(real, [Document(**with_extraction()), plain]))
    assert real.extracted == ["globex#0"]  # acme's graph came with it
    assert resp.extractors == {"bulk-worker": 1, "spacy": 1}
    entity = await real.graph.entity(real.collection, "Alice Smith", 1)
    assert entity.entity.type == "PERSON" and entity.chunk_ids == ["acme#0"]
    assert {(r.source, r.target, r.type) for r in entity.relations} == {("alice smith", "acme corporation", "FOUNDED")}
    held = await real.held()
    assert held[0] == 2 and held[1]["chunks"] == 2
    assert (await real.pipeline().verify(real.collection)).consistent


async def test_re_sending_the_same_extraction_replaces_it_with_the_same_counts(real):
    await real.pipeline().ingest(request(real, [Document(**with_extraction())]))
    held = await real.held()
    await real.pipeline().ingest(request(real, [Document(**with_extraction())]))
    assert await real.held() == held and held[1] == {"chunks": 1, "entities": 3, "relations": 2}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"vector": None}, r"must bring its `vector` too"),
        (
            {"extraction": {**GIVEN, "relations": [{"source": "alice smith", "target": "bob", "type": "KNOWS"}]}},
            r"must join two of the chunk's entities",
        ),  # fmt: skip
        (
            {
                "extraction": {
                    **GIVEN,
                    "entities": [{"key": "Alice", "name": "Alice", "type": "PERSON"}],
                    "relations": [],
                }
            },
            r"not a linking key",
        ),  # fmt: skip
        (
            {
                "extraction": {
                    **GIVEN,
                    "entities": [{"key": "alice", "name": "Alice", "type": "person"}],
                    "relations": [],
                }
            },
            r"String should match pattern",
        ),  # fmt: skip
        ({"extraction": {**GIVEN, "entities": [GIVEN["entities"][0]] * 2, "relations": []}}, r"keys must be unique"),
        ({"extraction": {**GIVEN, "relations": [{**GIVEN["relations"][0], "weight": 0}]}}, r"greater than 0"),
    ],
    ids=["no-vector", "dangling-relation", "unnormalized-key", "lower-case-type", "repeated-key", "zero-weight"],
)
async def test_a_bad_extraction_is_a_422_naming_it_with_nothing_written(real, monkeypatch, change, error):
    good = with_extraction("globex", vector=vector_of(1))
    bad = {k: v for k, v in with_extraction(**change).items() if v is not None}
    with pytest.raises(ValidationError, match=error):
        Document(**bad)
    with ingress_client(real.stages(), monkeypatch) as http:
        resp = await http.post("/v1/ingest", json={"collection": real.collection, "documents": [good, bad]})
    assert resp.status_code == 422, resp.text
    assert "extraction" in resp.text or "vector" in resp.text
    assert await real.held() == (0, {"chunks": 0, "entities": 0, "relations": 0})
    assert real.extracted == []


def test_the_wire_form_round_trips_an_extractors_result():
    wire = ChunkExtraction(**GIVEN)
    again = ChunkExtraction.of(wire.to_extraction("acme#0"))
    assert again == wire and wire.to_extraction("x#0").chunk_id == "x#0"
    assert len(vector_of(0)) == FAKE_DIM
