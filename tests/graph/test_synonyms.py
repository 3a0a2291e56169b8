"""Synonym edges by name embeddings (deployments/graph/index/synonyms.py), with the app's real embedding backend
(ONNX MiniLM) on written names: variants of one name pair up, different things do not."""

import asyncio

import numpy as np
import pytest

from deployments.config import EmbedderConfig
from deployments.embedder.backends import make_embedder
from deployments.graph.index.synonyms import THRESHOLD, NameSynonyms, compatible

NAMES = {
    "oxford university": ("Oxford University", "ORG"),
    "university of oxford": ("University of Oxford", "ORG"),
    "united states senate": ("United States Senate", "ORG"),
    "us senate": ("U.S. Senate", "ORG"),
    "twins effect": ("Twins Effect", "WORK"),
    "the twins effect ii": ("The Twins Effect II", "WORK"),
    "new york": ("New York", "GPE"),
    "new york city": ("New York City", "GPE"),
    "paris": ("Paris", "GPE"),
    "london": ("London", "GPE"),
    "apollo 11": ("Apollo 11", "EVENT"),
    "apollo 13": ("Apollo 13", "EVENT"),
    "barack obama": ("Barack Obama", "PERSON"),
    "michelle obama": ("Michelle Obama", "PERSON"),
    "1984": ("1984", "DATE"),
    "1985": ("1985", "DATE"),
}


@pytest.fixture(scope="module")
def synonyms() -> NameSynonyms:
    async def build() -> NameSynonyms:
        backend = make_embedder(EmbedderConfig())
        try:
            found = NameSynonyms(batch=4)  # several batches
            calls: list[int] = []

            async def embed(texts: list[str]) -> list[list[float]]:
                calls.append(len(texts))
                return await backend.embed(texts)

            assert await found.add(NAMES, embed) == len(NAMES) - 2  # dates are never embedded
            assert calls and max(calls) <= 4
            assert await found.add(NAMES, embed) == 0  # a name is embedded once
            return found
        finally:
            await backend.aclose()

    return asyncio.run(build())


def test_variants_of_one_name_are_synonyms_and_different_things_are_not(synonyms):
    pairs = {(a, b) for a, b, _ in synonyms.pairs()}
    assert ("oxford university", "university of oxford") in pairs
    assert ("united states senate", "us senate") in pairs
    assert ("london", "paris") not in pairs
    assert ("new york", "new york city") not in pairs  # a state and its city: close, below the threshold
    assert ("the twins effect ii", "twins effect") not in pairs  # a sequel
    assert ("barack obama", "michelle obama") not in pairs  # one family, two people
    assert ("apollo 11", "apollo 13") not in pairs  # close vectors, different digits
    assert not {k for p in pairs for k in p} & {"1984", "1985"}
    assert all(s >= THRESHOLD for _, _, s in synonyms.pairs())


def test_pairs_among_a_subset_and_types_must_agree(synonyms):
    assert {(a, b) for a, b, _ in synonyms.pairs(["oxford university", "university of oxford", "paris"])} == {
        ("oxford university", "university of oxford")
    }
    assert compatible("PERSON", "PERSON") and compatible("OTHER", "ORG")
    assert not compatible("PERSON", "ORG") and not compatible("DATE", "DATE")


def test_each_name_keeps_its_closest_synonyms_only():
    s = NameSynonyms(threshold=0.5, max_per_name=1)
    s.add_vectors([("a", "ORG"), ("b", "ORG"), ("c", "ORG")], np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3]]))
    closest = {(a, b) for a, b, _ in s.pairs()}
    assert ("a", "b") in closest and ("a", "c") not in closest


def test_the_index_ties_synonyms_as_aliases():
    """Pairs handed to the Graph index (CollectionIndex.synonyms) are aliases, as the string variants are: listed by
    aliases_of (what the explorer returns) and joined to the entity -> entity matrix the walk follows."""
    from deployments.graph.index.collection import CollectionIndex, IndexedChunk

    index = CollectionIndex()
    index.describe_entities({"us": ("U.S.", "GPE"), "united states": ("United States", "GPE"), "ohio": ("Ohio", "GPE")})
    chunks = [
        IndexedChunk("a#0", "a", ("us",), ("us",)),  # "The U.S. ..."
        IndexedChunk("b#0", "b", ("ohio", "united states"), ("ohio",)),  # "Ohio is a state of the United States."
    ]
    index.synonyms = [("united states", "us")]
    index.upsert(chunks)
    assert index.aliases_of("us") == ["united states"] and index.aliases_of("united states") == ["us"]
    assert index.aliases_of("ohio") == []
    related = index._build_related(len(index._entity_keys), np.ones(len(index._entity_keys)))
    us, united = index._entity_pos["us"], index._entity_pos["united states"]

    def tied(a: int, b: int) -> bool:  # b among a's out-edges (walk.Rows, CSR-style)
        return b in related.indices[related.indptr[a] : related.indptr[a + 1]]

    assert tied(us, united) and tied(united, us)
    plain = CollectionIndex()
    plain.describe_entities({"us": ("U.S.", "GPE"), "united states": ("United States", "GPE")})
    plain.upsert(chunks)
    assert plain.aliases_of("us") == []  # without the pair, nothing ties them
