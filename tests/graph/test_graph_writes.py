"""The rows a graph upsert writes (deployments/graph/store/writes.py), built without a store."""

from deployments.graph.store.writes import ingest_rows
from deployments.models import Chunk, Entity, Extraction, Relation


def test_ingest_rows_hold_distinct_entities_and_what_each_chunk_adds():
    chunks = [Chunk(chunk_id=f"d#{i}", doc_id="d", index=i, text=f"text {i}", metadata={"n": i}) for i in range(2)]
    alice, bob, carol = (Entity(key=k, name=k.title(), type="PERSON") for k in ("alice", "bob", "carol"))
    extractions = [
        Extraction(
            chunk_id="d#0",
            entities=[Entity(key="alice", name="Alice", type="PERSON", lead=True), bob],
            relations=[
                Relation(source="bob", target="alice", type="KNOWS", weight=2.0),
                Relation(source="alice", target="alice", type="SELF", weight=1.0),  # a loop: dropped
                Relation(source="alice", target="dave", type="KNOWS", weight=1.0),
            ],
        ),  # dave unknown: dropped
        Extraction(
            chunk_id="d#1",
            entities=[alice, bob, carol, Entity(key="", name="?", type="X")],
            relations=[Relation(source="alice", target="bob", type="KNOWS", weight=1.0)],
        ),
    ]
    rows = ingest_rows(chunks, extractions)
    assert [e["key"] for e in rows.entities] == ["alice", "bob", "carol"] and rows.entities[0]["name"] == "Alice"
    first, second = rows.chunks
    assert first["keys"] == ["alice", "bob"] and first["lead"] == ["alice"] and first["metadata"] == '{"n": 0}'
    # A typed relation keeps its direction: "bob KNOWS alice" and "alice KNOWS bob" are two edges.
    assert (first["rel_src"], first["rel_tgt"], first["rel_type"], first["rel_w"]) == (
        ["bob"],
        ["alice"],
        ["KNOWS"],
        [2.0],
    )
    assert second["keys"] == ["alice", "bob", "carol"] and second["lead"] == []
    assert rows.added == {("bob", "alice", "KNOWS"): 2.0, ("alice", "bob", "KNOWS"): 1.0}
    # A co-occurrence is undirected: stored source < target, so both orders add to one RELATED edge.
    both = [Extraction(chunk_id=c.chunk_id, entities=[alice, bob], relations=[Relation(source=s, target=t, type="CO_OCCURS")])
            for c, (s, t) in zip(chunks, [("bob", "alice"), ("alice", "bob")])]  # fmt: skip
    assert ingest_rows(chunks, both).added == {("alice", "bob", "CO_OCCURS"): 2.0}
