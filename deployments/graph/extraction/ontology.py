"""The graph's schema as data: the entity types and relation types both extractors emit (offline spaCy and LLM),
so a collection reads the same whichever extractor built it. Documented in deployments/README.md, "Graph schema".
"""

from __future__ import annotations

import re
import unicodedata

# Entity types (the `type` property of an :Entity). spaCy's OntoNotes labels, WORK_OF_ART shortened to WORK;
# OTHER is a name neither extractor could type (a document heading such as "Demon algorithm").
ENTITY_TYPES = (
    "PERSON",
    "ORG",
    "GPE",
    "LOC",
    "NORP",
    "FAC",
    "WORK",
    "EVENT",
    "PRODUCT",
    "TECH",  # a technical name: software, protocol, format, language of computing ("ArcadeDB", "Bolt", "JSON")
    "LAW",
    "LANGUAGE",
    "DATE",
    "OTHER",
)

# Relation types (the `type` property of a RELATED edge) are UPPER_SNAKE_CASE words from the text that tie two
# entities: a verb ("SHIPS"), a verb and its preposition ("BORN_IN"), a noun and its preposition ("EDITOR_OF").
# Two are not from the text:
CO_OCCURS = "CO_OCCURS"  # named in one sentence, nothing parsed between them (the legacy extractor's only type)
ALIAS = "ALIAS_OF"  # a short form or variant of another entity's name ("Rudy Giuliani" -> "Rudolph Giuliani")
DEFAULT_RELATION_TYPE = "RELATED_TO"  # an LLM relation whose type is unusable
UNTYPED = frozenset((CO_OCCURS, DEFAULT_RELATION_TYPE))

_REL_TYPE_OK = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def relation_type(words: str) -> str:
    """UPPER_SNAKE_CASE of ASCII letters, digits and `_` ("was born  in" -> "WAS_BORN_IN"); "" when nothing is left.

    Stored as data, never as query text; NFKC first, so full-width letters count as letters."""
    t = re.sub(r"[^A-Z0-9]+", "_", unicodedata.normalize("NFKC", words).upper()).strip("_")[:64]
    if t and not t[0].isalpha():
        t = f"R_{t}"[:64]
    return t if _REL_TYPE_OK.fullmatch(t or "") else ""
