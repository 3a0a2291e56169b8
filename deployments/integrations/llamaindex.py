"""A LlamaIndex retriever over graphrag-serve: each hit becomes a `NodeWithScore` whose `TextNode` has the chunk
id as its id, the document as its source node, and score, sources, doc id, graph facts and degraded stages in
its metadata.

    retriever = GraphRAGLlamaRetriever(base_url="http://127.0.0.1:8000", api_key="...", collection="docs")
    nodes = retriever.retrieve("Who founded Acme?")
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import (
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)

from deployments.client import AsyncGraphRAGClient, GraphRAGClient
from deployments.client.calls import RetrieveOptions
from deployments.integrations.hits import hit_metadata
from deployments.models import DEFAULT_COLLECTION, RetrieveResponse

_BOOKKEEPING = ("chunk_id", "collection", "score", "sources", "degraded")


class GraphRAGLlamaRetriever(BaseRetriever):
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        collection: str = DEFAULT_COLLECTION,
        client: GraphRAGClient | None = None,
        async_client: AsyncGraphRAGClient | None = None,
        **options: Any,
    ):
        """`options`: the other fields of a retrieve request (top_k, mode, max_hops, rerank, filter)."""
        super().__init__()
        self._client = client or GraphRAGClient(base_url, api_key)
        self._async_client = async_client or AsyncGraphRAGClient(base_url, api_key)
        self._options: RetrieveOptions = {"collection": collection, **options}  # type: ignore[typeddict-item]

    @staticmethod
    def _nodes(response: RetrieveResponse) -> list[NodeWithScore]:
        return [
            NodeWithScore(
                node=TextNode(
                    id_=h.chunk_id,
                    text=h.text,
                    metadata=hit_metadata(response, h),
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=h.doc_id)},
                    # What an LLM reads with the passage: its own metadata, the document id and the graph facts.
                    excluded_llm_metadata_keys=list(_BOOKKEEPING),
                    excluded_embed_metadata_keys=list(_BOOKKEEPING),
                ),
                score=h.score,
            )
            for h in response.hits
        ]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._nodes(self._client.retrieve(query_bundle.query_str, **self._options))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._nodes(await self._async_client.retrieve(query_bundle.query_str, **self._options))
