"""The static read-only check of user Cypher: ArcadeDB runs writes even inside a READ transaction, so this
check alone must refuse every way of writing. Each case here is also run against the real server in
tests/graph/test_graph_endpoints.py, which asserts the store is unchanged."""
from __future__ import annotations

import pytest

from deployments.graph.cypher_guard import UnsafeQuery, check_read_only
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
    "RETURN \"it's \\\"quoted\\\" \" AS s",
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
