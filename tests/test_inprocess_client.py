"""benchmarks/inprocess.py's client drives graphrag-ingest's loop and the retrieve route of an in-process app (the
quality benchmarks' --in-process runs: they failed with an AttributeError before it had `ingest`)."""

from __future__ import annotations

from benchmarks.inprocess import InProcessClient
from deployments.cli.ingest import IngestState, ingest
from tests.fakes import sample_documents
from tests.openai_server import OpenAIProtocolServer


def test_graphrag_ingest_loop_and_retrieve_through_the_in_process_client(tmp_path):
    docs = sample_documents()
    with OpenAIProtocolServer() as embeddings:
        client = InProcessClient(
            {"data_dir": str(tmp_path), "embedder": {"openai_base_url": embeddings.base_url, "max_retries": 0}}
        )
        try:
            report = ingest(client, "docs", docs, IngestState(None), batch_size=2, total=len(docs))
            body = client.post("/v1/retrieve", json={"collection": "docs", "query": "Bolt protocol", "top_k": 3}).json()
        finally:
            client.close()
    assert report.sent == len(docs) and report.chunks >= len(docs)
    assert body["hits"] and not body["degraded"]
    assert {h["doc_id"] for h in body["hits"]} <= {d["id"] for d in docs}
