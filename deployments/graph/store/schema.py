"""Labels, relationship types and schema of the graph store, and how its write conflicts look."""

from __future__ import annotations

import re

from neo4j.exceptions import Neo4jError

_REL_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_LABEL = re.compile(r"^[A-Z][A-Za-z0-9_]{0,63}$")


def _checked(name: str, pattern: re.Pattern) -> str:
    """A label or relationship type for query text: only this module's constants, and checked anyway."""
    if not pattern.fullmatch(name):
        raise ValueError(f"invalid label or relationship type {name!r}")
    return name


CHUNK = _checked("Chunk", _LABEL)
ENTITY = _checked("Entity", _LABEL)
MENTIONS = _checked("MENTIONS", _REL_TYPE)
RELATED = _checked("RELATED", _REL_TYPE)  # the relation's own type (e.g. CO_OCCURS) is a property: data
# A collection's write counter and its change log, read by the Graph replicas' in-memory indexes (index/live.py).
VERSION = _checked("GraphVersion", _LABEL)
CHANGE = _checked("GraphChange", _LABEL)

# Uniqueness of (key, collection) and (id, collection) is what makes concurrent MERGEs safe: without it two
# transactions each create the same entity (seen with ArcadeDB's optimistic MVCC); with it the later commit
# fails and is retried. ArcadeDB seeks these composite indexes for `key IN $keys AND collection = $c`.
# Applied by the embedded server at start, and lazily by GraphService against an external server.
SCHEMA = (
    f"CREATE CONSTRAINT entity_key IF NOT EXISTS FOR (e:{ENTITY}) REQUIRE (e.key, e.collection) IS UNIQUE",
    f"CREATE CONSTRAINT chunk_id IF NOT EXISTS FOR (c:{CHUNK}) REQUIRE (c.id, c.collection) IS UNIQUE",
    f"CREATE INDEX chunk_doc_id IF NOT EXISTS FOR (c:{CHUNK}) ON (c.doc_id)",
    f"CREATE CONSTRAINT graph_version IF NOT EXISTS FOR (v:{VERSION}) REQUIRE v.collection IS UNIQUE",
    f"CREATE INDEX graph_change IF NOT EXISTS FOR (g:{CHANGE}) ON (g.collection, g.version)",
)


def is_conflict(exc: Neo4jError) -> bool:
    # ArcadeDB reports optimistic-concurrency conflicts as generic errors naming the Java exception, and a
    # concurrent MERGE of the same entity as a uniqueness violation: both succeed when run again.
    text = f"{exc.code} {exc.message}"
    return any(
        s in text for s in ("ConcurrentModification", "NeedRetry", "ConstraintValidationFailed", "DuplicatedKey")
    )
