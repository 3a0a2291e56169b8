"""The LangChain and LlamaIndex retrievers, through each library's own interfaces, over the ingress app's real
routes (in-process stages, no Ray): the LangChain one inside an LCEL chain with langchain-core's fake chat model."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeRelationship, QueryBundle
from starlette.testclient import TestClient

from deployments.client import AsyncGraphRAGClient, GraphRAGClient, NotFoundError
from deployments.errors import CollectionNotFound
from deployments.ingress.http_app import app
from deployments.integrations.langchain import GraphRAGRetriever
from deployments.integrations.llamaindex import GraphRAGLlamaRetriever
from deployments.models import GraphEdge, GraphNode, GraphResult, Subgraph
from tests.fakes import FakeStages, chunk
from tests.ingress_harness import ingress_client


class Stages(FakeStages):
    """Hits with metadata of their own, and a subgraph with one relation: the facts the metadata carries."""

    async def graph_search(self, collection, query, hops, limit, query_vector=None, texts=True, seeds=None):
        """Its chunk with its text whatever `texts` asks (as a replica reading its store answers)."""
        await self._stage("graph", 0)
        nodes = [
            GraphNode(id="alice", name="Alice Smith", type="PERSON"),
            GraphNode(id="acme", name="Acme Corp", type="ORG"),
        ]
        found = chunk("c#0", "Alice Smith founded Acme Corp.")
        found.metadata = {"source": "c.md"}
        return GraphResult(
            chunks=[found],
            subgraph=Subgraph(nodes=nodes, edges=[GraphEdge(source="alice", target="acme", type="FOUNDED")]),
        )


@pytest.fixture
def clients(monkeypatch):
    """A sync and an async client of the app's real routes (the sync one through Starlette's TestClient)."""
    with ingress_client(Stages().stages(), monkeypatch) as http:
        yield (
            GraphRAGClient("http://ingress", http_client=TestClient(app)),
            AsyncGraphRAGClient("http://ingress", http_client=http),
        )


def check_metadata(metadata: dict) -> None:
    assert metadata["doc_id"] and metadata["chunk_id"].startswith(metadata["doc_id"] + "#")
    assert isinstance(metadata["score"], float) and set(metadata["sources"]) <= {"vector", "lexical", "graph"}
    assert metadata["graph_facts"] == ["Alice Smith —FOUNDED→ Acme Corp"] and metadata["degraded"] == []


async def test_langchain_retriever_sync_and_async(clients):
    sync, async_ = clients
    retriever = GraphRAGRetriever(collection="c", top_k=3, client=sync, async_client=async_)
    docs = retriever.invoke("Who founded Acme?")
    assert len(docs) == 3 and [d.id for d in docs] == [d.metadata["chunk_id"] for d in docs]
    for doc in docs:
        check_metadata(doc.metadata)
    graph_hit = next(d for d in docs if d.id == "c#0")
    assert graph_hit.page_content == "Alice Smith founded Acme Corp." and graph_hit.metadata["source"] == "c.md"
    assert "graph" in graph_hit.metadata["sources"]
    assert [d.id for d in await retriever.ainvoke("Who founded Acme?")] == [d.id for d in docs]


async def test_langchain_retriever_in_an_lcel_chain(clients):
    sync, async_ = clients
    retriever = GraphRAGRetriever(collection="c", top_k=2, client=sync, async_client=async_)
    prompts: list[str] = []

    def context(docs) -> str:
        return (
            "\n".join(f"[{i}] {d.page_content} ({d.metadata['doc_id']})" for i, d in enumerate(docs, 1))
            + "\nFacts: "
            + "; ".join(docs[0].metadata["graph_facts"])
        )

    def seen(prompt):
        prompts.append(prompt.to_string())
        return prompt

    prompt = ChatPromptTemplate.from_template("Answer from the passages.\n{context}\nQuestion: {question}")
    chain = (
        {"context": retriever | context, "question": RunnablePassthrough()}
        | prompt
        | seen
        | FakeListChatModel(responses=["Alice Smith [1]."])
        | StrOutputParser()
    )
    assert await chain.ainvoke("Who founded Acme?") == "Alice Smith [1]."
    assert "Question: Who founded Acme?" in prompts[0] and "Facts: Alice Smith —FOUNDED→ Acme Corp" in prompts[0]
    assert prompts[0].count("\n[") == 2  # the two passages the retriever returned
    assert chain.invoke("Who founded Acme?") == "Alice Smith [1]."  # sync, through the same chain


async def test_llamaindex_retriever_sync_async_and_in_a_query_engine(clients):
    sync, async_ = clients
    retriever = GraphRAGLlamaRetriever(collection="c", top_k=3, client=sync, async_client=async_)
    nodes = retriever.retrieve("Who founded Acme?")
    assert len(nodes) == 3 and [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)
    for n in nodes:
        check_metadata(n.node.metadata)
        assert n.node.node_id == n.node.metadata["chunk_id"]
        assert n.node.relationships[NodeRelationship.SOURCE].node_id == n.node.metadata["doc_id"]
    assert [n.node.node_id for n in await retriever.aretrieve(QueryBundle("Who founded Acme?"))] == [
        n.node.node_id for n in nodes
    ]
    # What an LLM reads: the passage with its document and facts, not the scores and ids.
    text = next(n for n in nodes if n.node.node_id == "c#0").node.get_content(metadata_mode=MetadataMode.LLM)
    assert "Alice Smith —FOUNDED→ Acme Corp" in text and "doc_id: c" in text and "score" not in text
    # A query engine answers from them: llama-index's MockLLM echoes its prompt, so the answer shows what it was given.
    response = RetrieverQueryEngine.from_args(retriever, llm=MockLLM()).query("Who founded Acme?")
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in nodes]
    assert "Alice Smith founded Acme Corp." in str(response) and "Alice Smith —FOUNDED→ Acme Corp" in str(response)


async def test_a_missing_collection_raises_the_clients_error_in_both(monkeypatch):
    fake = Stages()
    fake.fail["vector"] = CollectionNotFound("nope")
    with ingress_client(fake.stages(), monkeypatch) as http:
        sync, async_ = (
            GraphRAGClient("http://ingress", http_client=TestClient(app)),
            AsyncGraphRAGClient("http://ingress", http_client=http),
        )
        with pytest.raises(NotFoundError):
            await GraphRAGRetriever(collection="nope", client=sync, async_client=async_).ainvoke("q")
        with pytest.raises(NotFoundError):
            GraphRAGLlamaRetriever(collection="nope", client=sync, async_client=async_).retrieve("q")
