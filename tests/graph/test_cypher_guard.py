"""The static read-only check of user Cypher: the first barrier (the store's read-only user is the second, see
tests/graph/test_user_query_security.py). Each case here is also run against the real server in
tests/graph/test_graph_endpoints.py, which asserts the store is unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.graph.queries.cypher_guard import LINE_TERMINATORS, UnsafeQuery, check_read_only, tokens
from tests.fakes import WRITES

READS = [
    "MATCH (n) RETURN n LIMIT 5",
    "match (e:Entity) where e.name = 'CREATE (x)' return e.name // DELETE everything",
    "MATCH (e:Entity) /* SET e.x = 1 */ RETURN count(e) AS n",
    "MATCH (e:Entity {collection: $c}) RETURN e.key AS key ORDER BY key",
    "OPTIONAL MATCH (e:Entity)-[r:RELATED]-(x) RETURN e, r, x LIMIT 3",
    "UNWIND range(1, 10) AS i WITH i WHERE i % 2 = 0 RETURN collect(i) AS even",
    "CALL db.labels()",
    "CALL db.labels() YIELD label RETURN label",
    "CALL { MATCH (n:Entity) RETURN n } RETURN count(n) AS n",
    "RETURN date.truncate('day', date('2024-05-06')) AS d, duration.between(date('2024-01-01'), date('2024-02-01')) AS dur",
    "MATCH (n) RETURN n.set AS s, n.`create` AS c",
    "MATCH (n) RETURN n;",
    'RETURN "it\'s \\"quoted\\" " AS s',
    "MATCH (`weird ``name```) RETURN 1",
]


@pytest.mark.parametrize("query", READS)
def test_reads_pass(query):
    check_read_only(query)


@pytest.mark.parametrize("query", WRITES)
def test_writes_and_tricks_are_refused(query):
    with pytest.raises(UnsafeQuery) as info:
        check_read_only(query)
    assert str(info.value)  # a reason for the 400


# Every line terminator a lexer may know (ArcadeDB's and Neo4j's end a `//` comment at CR or LF).
TERMINATORS = ["\r", "\n", "\r\n", "\u2028", "\u2029", "\u0085", "\x0c", "\x0b"]
HIDDEN = [
    "CREATE (x)",
    "MATCH (n) SET n.x = 1",
    "MATCH (n) DETACH DELETE n",
    "LOAD CSV FROM 'x' AS l RETURN l",
    "MERGE (x:X)",
]


@given(
    start=st.sampled_from(["WITH 1 AS x", "MATCH (n)", "RETURN 1 AS y"]),
    comment=st.lists(st.sampled_from(list("ab /*'\"`") + ["\u00e9", "\u200b"]), max_size=8).map("".join),
    term=st.sampled_from(TERMINATORS),
    hidden=st.sampled_from(HIDDEN),
    case=st.booleans(),
)
@settings(max_examples=500, deadline=None)
def test_a_line_comment_ends_at_every_terminator(start, comment, term, hidden, case):
    """Issue 10, finding 1: the guard ended `//` at LF only, ArcadeDB's lexer at CR too; `WITH 1 AS x //\rLOAD
    CSV ...` read files. Whatever ends the comment, the text after it is checked as code."""
    query = f"{start} //{comment}{term}{hidden.lower() if case else hidden}"
    with pytest.raises(UnsafeQuery):
        check_read_only(query)


@pytest.mark.parametrize("term", sorted(LINE_TERMINATORS))
def test_a_comment_never_swallows_the_text_after_a_terminator(term):
    words = [t.text for t in tokens(f"MATCH (n) // note{term}RETURN n")] if term in "\r\n" else None
    if words is not None:
        assert words == ["MATCH", "(", "n", ")", "RETURN", "n"]
    else:  # not a line end for Cypher, so not allowed as code either: refused
        with pytest.raises(UnsafeQuery):
            tokens(f"MATCH (n) // note{term}RETURN n")


def test_file_urls_are_refused_even_in_strings():
    for query in ["RETURN 'file:///etc/passwd' AS f", "RETURN ' FILE:/etc/passwd' AS f"]:
        with pytest.raises(UnsafeQuery, match="file: URLs"):
            check_read_only(query)
    check_read_only("RETURN 'profile: x' AS f")
