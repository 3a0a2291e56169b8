"""The static read-only check of user Cypher: ArcadeDB runs writes even inside a READ transaction, so this
check alone must refuse every way of writing. Each case here is also run against the real server in
tests/test_graph_endpoints.py, which asserts the store is unchanged."""
from __future__ import annotations

import pytest

from deployments.graph.cypher_guard import UnsafeQuery, check_read_only

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

WRITES = [
    # plain write clauses, any case, any white space
    "CREATE (n:X) RETURN n",
    "MATCH (n) SET n.x = 1",
    "match (n) set n += {x: 1}",
    "MATCH (n) DELETE n",
    "MATCH (n) DETACH DELETE n",
    "MATCH (n)\tDETACH\tDELETE\tn",
    "MATCH (n)\nDETACH\n\nDELETE n",
    "MATCH (n) REMOVE n.x",
    "MATCH (n) REMOVE n:Entity",
    "MERGE (n:X {k: 1}) RETURN n",
    "MaTcH (n) mErGe (m:X) RETURN m",
    "UNWIND [1, 2] AS i CREATE (:X {i: i})",
    "MATCH (n) FOREACH (x IN [1] | SET n.y = x)",
    "WITH 1 AS x INSERT (:X)",
    # hidden by comments: the comment ends, the write remains
    "MATCH (n) // harmless\nDELETE n",
    "MATCH (n) /* harmless */ DETACH /* still */ DELETE n",
    "MATCH (n) RETURN n /* unterminated comment DELETE n",
    "MATCH (n) RETURN 'unterminated string DELETE n",
    # subqueries
    "CALL { CREATE (n:X) RETURN n } RETURN n",
    "CALL { MATCH (n) DETACH DELETE n } RETURN 1",
    "MATCH (a) CALL (a) { SET a.x = 1 } RETURN a",
    "MATCH (n) CALL { WITH n DELETE n } IN TRANSACTIONS",
    # procedures and functions
    "CALL apoc.create.node(['X'], {})",
    "CALL apoc.periodic.iterate('MATCH (n) RETURN n', 'DELETE n', {})",
    "call dbms.killQuery('q-1')",
    "CALL db.createLabel('X')",
    "CALL `apoc.create.node`(['X'], {})",
    "RETURN apoc.cypher.runFirstColumnSingle('CREATE (n) RETURN n', {}) AS x",
    "RETURN `apoc`.cypher.run('CREATE (n)', {}) AS x",
    "RETURN `evil`(1)",
    # outside data, other databases, admin, several statements
    "LOAD CSV FROM 'file:///etc/passwd' AS line RETURN line",
    "WITH 1 AS x LOAD CSV FROM 'file:///etc/passwd' AS line RETURN line",
    "USING PERIODIC COMMIT LOAD CSV FROM 'x' AS l CREATE (:X)",
    "USE system MATCH (n) RETURN n",
    "SHOW USERS",
    "DROP INDEX chunk_doc_id",
    "CREATE INDEX x IF NOT EXISTS FOR (n:X) ON (n.y)",
    "MATCH (n) RETURN n; MATCH (m) DETACH DELETE m",
    "MATCH (n) RETURN n; CREATE (m)",
    # other query languages a server might accept
    "DELETE FROM V",
    "UPDATE Entity SET name = 'x'",
    "SELECT FROM Entity",
    # unicode: look-alikes and invisible characters never form a keyword we would miss
    "MATCH (n) ＣＲＥＡＴＥ (m)",
    "MATCH (n) CRE\u200bATE (m)",
    "MATCH (n)\u00a0DELETE n",
    "MATCH (n) DЕLETE n",  # a Cyrillic Е
    "MATCH (n) RETURN n\u2028DELETE n",
    "",
    "   \n\t ",
    "// only a comment",
]


@pytest.mark.parametrize("query", READS)
def test_reads_pass(query):
    check_read_only(query)


@pytest.mark.parametrize("query", WRITES)
def test_writes_and_tricks_are_refused(query):
    with pytest.raises(UnsafeQuery) as info:
        check_read_only(query)
    assert str(info.value)  # a reason for the 400
