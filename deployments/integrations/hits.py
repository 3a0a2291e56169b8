"""What both framework retrievers put into a document's metadata: the hit's own metadata, then its score,
sources, document and chunk ids, the graph facts retrieval found, and the stages that failed."""

from __future__ import annotations

from typing import Any

from deployments.ingress.fusion import graph_facts
from deployments.models import Hit, RetrieveResponse


def hit_metadata(response: RetrieveResponse, hit: Hit) -> dict[str, Any]:
    return {
        **hit.metadata,
        "doc_id": hit.doc_id,
        "chunk_id": hit.chunk_id,
        "collection": response.collection,
        "score": hit.score,
        "sources": list(hit.sources),
        # The query's subgraph as facts ("A —TYPE→ B", typed relations only), the same ones the chat stage is given.
        "graph_facts": graph_facts(response.graph),
        "degraded": [d.stage for d in response.degraded],
    }
