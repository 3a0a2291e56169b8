"""`graphrag-ingest --ray`: the workers' documents posted over HTTP to the ingress's routes over the real stores (the
cluster replaced by one in-process worker: Ray's part is tests/bulk/test_cluster.py)."""

from __future__ import annotations

import asyncio

import httpx
import ray

from deployments.bulk import cluster
from deployments.bulk.worker import ChunkWorker
from deployments.cli import ingest as cli
from deployments.client import GraphRAGClient
from deployments.config import AppConfig
from tests.fakes import FakeEmbedder
from tests.ingress.test_bulk_import import _OnLoop, real  # noqa: F401  (the fixture)
from tests.ingress_harness import ingress_client

ROWS = [
    {"id": "acme", "text": "Alice Smith founded Acme Corporation in Berlin. Acme Corporation builds robots."},
    {"id": "long", "text": " ".join(f"Sentence {i}: Bob Jones runs Globex in Paris." for i in range(40))},
]


async def test_ray_ingest_posts_the_workers_documents_and_the_server_extracts_nothing(real, monkeypatch, tmp_path):  # noqa: F811
    asked: list[str] = []
    real.graph._extract = lambda chunk: asked.append(chunk.chunk_id)
    worker = ChunkWorker(AppConfig.from_args({"data_dir": str(tmp_path)}), embedder=FakeEmbedder())

    def local_spread(rows, write, workers):  # the cluster: one worker in this process, batches of 1 row
        report = cluster.BulkReport()
        for row in rows:
            docs = worker([row])
            write(docs)
            report.rows, report.documents = report.rows + 1, report.documents + len(docs)
        return report

    monkeypatch.setattr(ray, "init", lambda address: None)
    monkeypatch.setattr(cluster, "alive_nodes", lambda: ["node"])
    monkeypatch.setattr(cluster, "start_workers", lambda args, nodes: [])
    monkeypatch.setattr(cluster, "spread", local_spread)
    with ingress_client(real.stages(), monkeypatch) as http:
        transport = _OnLoop(http, asyncio.get_running_loop())
        client = GraphRAGClient("http://ingress", http_client=httpx.Client(transport=transport))
        try:
            report = await asyncio.to_thread(cli.ingest_on_cluster, client, real.collection, ROWS, "auto", "data")
        finally:
            worker._loop.close()
    points, graph = await real.held()
    assert report.sent == 2 and report.chunks == points == graph["chunks"] > 2
    assert asked == [] and graph["entities"] == report.entities > 0
    assert (await real.pipeline().verify(real.collection)).consistent
