from deployments.graph.extraction.offline import (
    ENTITY_TYPES,
    MAX_ENTITIES_PER_CHUNK,
    RELATION_TYPE,
    extract,
    query_keys,
)
from deployments.models import Chunk
from deployments.text import STOP_WORDS, normalize_name


def chunk(text: str, chunk_id: str = "d#0") -> Chunk:
    return Chunk(chunk_id=chunk_id, doc_id="d", index=0, text=text)


def by_key(ex):
    return {e.key: e for e in ex.entities}


def test_normalize_name():
    assert normalize_name("  The   Bank-of-England ") == "the bank of england"
    assert normalize_name("U.S.A.") == "usa"
    assert normalize_name("O’Brien") == "obrien"
    assert normalize_name("ＮＥＯ４Ｊ") == "neo4j"  # NFKC folds full-width forms
    assert normalize_name("Straße") == "strasse"  # casefold, not lower
    assert normalize_name("«Graph»/RAG!") == "graph rag"
    assert normalize_name("`) DETACH DELETE n //") == "detach delete n"
    assert normalize_name("...") == ""


def test_named_spans_acronyms_and_quoted_terms():
    ex = extract(
        chunk(
            'The Bank of England raised rates. Andrew Bailey said the MPC voted. The "quantitative tightening" plan continues. '
            "Officials met at the Federal Reserve."
        )
    )
    found = by_key(ex)
    assert found["bank of england"].type == "ENTITY" and found["bank of england"].name == "Bank of England"
    assert found["andrew bailey"].type == "ENTITY"
    assert found["mpc"].type == "ACRONYM" and found["mpc"].name == "MPC"
    assert found["quantitative tightening"].type == "TERM"
    assert found["federal reserve"].type == "ENTITY"
    # Sentence-initial grammar is not an entity.
    assert "the" not in found and "officials" not in found and "the bank of england" not in found
    assert all(e.type in ENTITY_TYPES for e in ex.entities)
    assert all(e.key == normalize_name(e.name) for e in ex.entities)


def test_frequent_phrases_become_concepts_and_stop_words_never_do():
    ex = extract(
        chunk(
            "Graph databases store relations. The graph databases scale well. Some people like cats. "
            "These graph databases are fast."
        )
    )
    found = by_key(ex)
    assert found["graph databases"].type == "CONCEPT"
    assert "cats" not in found  # seen once
    assert not (set(found) & STOP_WORDS)


def test_relations_count_shared_sentences():
    ex = extract(
        chunk("Alice Smith met Bob Jones in Paris. Alice Smith and Bob Jones wrote a paper. Carol King stayed home.")
    )
    rels = {(r.source, r.target): r for r in ex.relations}
    assert rels[("alice smith", "bob jones")].weight == 2.0
    assert rels[("alice smith", "paris")].weight == 1.0
    assert all(r.type == RELATION_TYPE for r in ex.relations)
    assert all(r.source < r.target for r in ex.relations)
    # Carol King shares no sentence with anyone.
    assert not any("carol king" in (r.source, r.target) for r in ex.relations)
    assert "carol king" in by_key(ex)


def test_deterministic_and_capped():
    names = " ".join(f"Person{i} Name{i} met Company{i} Group{i}." for i in range(40))
    first, second = extract(chunk(names)), extract(chunk(names))
    assert first == second
    assert len(first.entities) == MAX_ENTITIES_PER_CHUNK
    kept = {e.key for e in first.entities}
    assert all(r.source in kept and r.target in kept for r in first.relations)


def test_no_entities_in_plain_lowercase_text():
    ex = extract(chunk("it was a quiet day and nothing much happened at all."))
    assert ex.entities == [] and ex.relations == []
    assert ex.chunk_id == "d#0"


def test_query_keys():
    keys = query_keys("What did the Bank of England say about Graph Databases?")
    assert "bank of england" in keys
    assert "graph databases" in keys and "graph database" in keys  # singular variant
    assert "england" in keys and "bank" in keys
    assert not any(k.split()[0] in STOP_WORDS or k.split()[-1] in STOP_WORDS for k in keys)
    assert "of england" not in keys and "the" not in keys
    assert all(1 <= len(k.split()) <= 4 for k in keys)
    assert len(keys) == len(set(keys))
    assert query_keys("what is the?") == []
    # Keys are normalized exactly like entity names, so linking matches extraction.
    assert query_keys("ＮＥＯ４Ｊ") == [normalize_name("Neo4j")]


def test_possessives_and_repeated_heading_words_split_names():
    found = by_key(
        extract(chunk("ArcadeDB ArcadeDB is a database. It serves ArcadeDB's Bolt plugin to Neo4j drivers."))
    )
    assert "arcadedb" in found and "bolt" in found
    assert "arcadedb arcadedb" not in found and "arcadedbs bolt" not in found and "arcadedb bolt" not in found


def test_a_lone_sentence_initial_subject_is_a_name():
    # "Leland is a town": a single capitalized word before a subject's verb (or a parenthesis) names the subject,
    # even when no title line repeats it; sentence-initial grammar ("Officials met") still is not a name.
    found = by_key(extract(chunk("Leland is a town in Brunswick County. The population was 13,527.")))
    assert "leland" in found and found["leland"].type == "ENTITY"
    found = by_key(extract(chunk("Gallu (Sumerian) was a demon of the underworld. Officials met there.")))
    assert "gallu" in found and "officials" not in found
    # A heading line (no lower-case word) is all names, a lone one included.
    found = by_key(extract(chunk("Laie\n\nThe town lies on the island of Oahu.")))
    assert "laie" in found and found["laie"].lead


def test_punctuation_between_capitalized_words_ends_a_name():
    found = by_key(extract(chunk('"The Hukilau Song" was written after a luau in Laie, Hawaii, by Jack Owens.')))
    assert "laie" in found and "hawaii" in found and "laie hawaii" not in found
    found = by_key(extract(chunk("Alexandria International Airport (Louisiana)\n\nIt is a public use airport.")))
    assert "alexandria international airport" in found and "louisiana" in found
    assert "alexandria international airport louisiana" not in found
    found = by_key(extract(chunk("The Bank of England met in London.")))
    assert "bank of england" in found  # a connector inside a name still joins it


def test_lead_is_the_first_sentences_subject_not_every_name_in_it():
    # The first sentence's opening names (before its first lower-case word) say what the chunk is about; the
    # places it goes on to mention are only mentioned.
    found = by_key(extract(chunk("Leland is a town in Brunswick County, North Carolina. It grew in the 2000s.")))
    assert found["leland"].lead
    assert not found["brunswick county"].lead and not found["north carolina"].lead
    # The name right before the subject's verb counts too, after an opening phrase.
    found = by_key(extract(chunk("In Akkadian mythology, Alû is a vengeful spirit of the Utukku.")))
    assert found["alû"].lead and not found["utukku"].lead
    # A title line: every name in it.
    found = by_key(extract(chunk("Leland, North Carolina\n\nLeland is a town in Brunswick County.")))
    assert found["leland"].lead and found["north carolina"].lead and not found["brunswick county"].lead
    # No named subject: the first sentence's names, as before.
    found = by_key(extract(chunk("the report was cited by Andrew Bailey and Mark Carney. Nothing else.")))
    assert found["andrew bailey"].lead and found["mark carney"].lead
