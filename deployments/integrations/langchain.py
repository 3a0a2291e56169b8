"""A LangChain retriever over graphrag-serve: each hit becomes a `Document` (page content: the passage; metadata:
score, sources, doc id, chunk id, graph facts, degraded stages; id: the chunk id).

    retriever = GraphRAGRetriever(base_url="http://127.0.0.1:8000", api_key="...", collection="docs", top_k=5)
    docs = retriever.invoke("Who founded Acme?")
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr

from deployments.client import AsyncGraphRAGClient, GraphRAGClient
from deployments.client.calls import RetrieveOptions
from deployments.integrations.hits import hit_metadata
from deployments.models import (
    DEFAULT_COLLECTION,
    RetrievalMode,
    RetrieveResponse,
    Scalar,
)


class GraphRAGRetriever(BaseRetriever):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_url: str | None = Field(None, description="The server; default $GRAPHRAG_URL, else http://127.0.0.1:8000.")
    api_key: str | None = Field(None, repr=False, description="Default $GRAPHRAG_API_KEY.")
    collection: str = DEFAULT_COLLECTION
    top_k: int | None = None
    mode: RetrievalMode | None = None
    max_hops: int | None = None
    filter: dict[str, Scalar] | None = None
    client: GraphRAGClient | None = Field(
        None, exclude=True, description="A client to use instead of one made from base_url."
    )
    async_client: AsyncGraphRAGClient | None = Field(None, exclude=True)
    _made: dict[str, Any] = PrivateAttr(default_factory=dict)

    def _options(self) -> RetrieveOptions:
        options: dict[str, Any] = {
            "collection": self.collection,
            "top_k": self.top_k,
            "mode": self.mode,
            "max_hops": self.max_hops,
            "filter": self.filter,
        }
        return {k: v for k, v in options.items() if v is not None}  # type: ignore[return-value]

    def _documents(self, response: RetrieveResponse) -> list[Document]:
        return [Document(id=h.chunk_id, page_content=h.text, metadata=hit_metadata(response, h)) for h in response.hits]

    def _sync(self) -> GraphRAGClient:
        if self.client is None:
            self.client = GraphRAGClient(self.base_url, self.api_key)
        return self.client

    def _async(self) -> AsyncGraphRAGClient:
        if self.async_client is None:
            self.async_client = AsyncGraphRAGClient(self.base_url, self.api_key)
        return self.async_client

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self._documents(self._sync().retrieve(query, **self._options()))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        return self._documents(await self._async().retrieve(query, **self._options()))
