def test_graph_facts_are_typed_relations_never_co_occurrence():
    from deployments.ingress.fusion import graph_facts
    from deployments.models import GraphEdge, GraphNode, Subgraph

    nodes = [
        GraphNode(id=k, name=n, type="ORG")
        for k, n in (("arcadedb", "ArcadeDB"), ("bolt", "Bolt plugin"), ("api", "API"))
    ]
    edges = [
        GraphEdge(source="api", target="bolt", type="CO_OCCURS", weight=9.0),
        GraphEdge(source="arcadedb", target="bolt", type="SHIPS", weight=1.0),
    ]
    assert graph_facts(Subgraph(nodes=nodes, edges=edges)) == ["ArcadeDB —SHIPS→ Bolt plugin"]
