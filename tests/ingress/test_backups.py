"""Snapshot and restore (ingress/backups.py) over the real engines in one process: Qdrant Edge, ArcadeDB's Bolt
server, the OpenAI-protocol test double as embeddings endpoint. And the intent log's pause, on its own."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from benchmarks.inprocess import in_process_pipeline
from deployments.errors import BadRequest, StageUnavailable
from deployments.ingress.backups import Backups
from deployments.ingress.intents import PAUSE, IntentLog
from deployments.models import Document, IngestRequest, RetrieveRequest
from tests.fakes import sample_documents
from tests.openai_server import OpenAIProtocolServer

QUERIES = [
    "Which database ships a Bolt protocol plugin?",
    "What does Qdrant Edge embed?",
    "How does Ray Serve scale?",
    "What is reciprocal rank fusion?",
    "Which model embeds the passages?",
    "What is GraphRAG?",
]


@pytest.fixture(scope="module")
def embeddings():
    with OpenAIProtocolServer() as server:
        yield server


def app_args(data_dir, embeddings) -> dict:
    return {"data_dir": str(data_dir), "embedder": {"openai_base_url": embeddings.base_url, "max_retries": 0}}


async def top10(pipeline) -> list[list[tuple[str, float]]]:
    out = []
    for q in QUERIES:
        r = await pipeline.retrieve(RetrieveRequest(collection="docs", query=q, top_k=10, mode="hybrid+graph"))
        assert not r.degraded
        out.append([(h.chunk_id, round(h.score, 6)) for h in r.hits])
    return out


def many_documents(n: int) -> list[Document]:
    base = sample_documents()
    return [Document(id=f"copy{i}-{d['id']}", text=d["text"]) for i in range(n) for d in base]


async def test_snapshot_while_ingesting_restores_the_same_answers_into_an_empty_folder(tmp_path, embeddings):
    snap = tmp_path / "snap"
    async with in_process_pipeline(app_args(tmp_path / "a", embeddings)) as pipeline:
        pipeline.intents = IntentLog(tmp_path / "a" / "intents")
        docs = [Document(**d) for d in sample_documents()]
        await pipeline.ingest(IngestRequest(collection="docs", documents=docs))
        before = await top10(pipeline)
        backups = Backups(pipeline)

        async def keep_ingesting() -> int:  # into another collection, one document at a time, during the snapshot
            n = 0
            for doc in many_documents(3):
                await pipeline.ingest(IngestRequest(collection="busy", documents=[doc]))
                n += 1
            return n

        writer = asyncio.ensure_future(keep_ingesting())
        await asyncio.sleep(0.3)
        taken = await backups.snapshot(str(snap))
        written = await writer
        assert set(taken.collections) == {"docs", "busy"} and written > 0
        assert taken.collections["docs"].points == (await pipeline.stats("docs")).points
        with pytest.raises(BadRequest, match="not empty"):
            await backups.snapshot(str(snap))
    manifest = json.loads((snap / "manifest.json").read_text())
    assert manifest["collections"]["docs"]["graph"]["chunks"] == taken.collections["docs"].points

    async with in_process_pipeline(app_args(tmp_path / "b", embeddings)) as pipeline:
        pipeline.intents = IntentLog(tmp_path / "b" / "intents")
        restored = await Backups(pipeline).restore(str(snap))
        for name, report in restored.collections.items():
            assert report.consistent, (name, report)
        assert restored.collections["busy"].vector_chunks == taken.collections["busy"].points
        assert await top10(pipeline) == before  # same ids, same scores
        with pytest.raises(BadRequest, match="already holds collection"):
            await Backups(pipeline).restore(str(snap), ["docs"])
        assert (await pipeline.verify("docs")).consistent


def test_begin_waits_while_a_snapshot_holds_the_log(tmp_path):
    log = IntentLog(tmp_path)
    log.pause()
    with pytest.raises(BadRequest, match="another snapshot"):
        log.pause()
    began: list[float] = []
    t = threading.Thread(target=lambda: began.append(time.monotonic()) if log.begin("ingest", "c", ["d"]) else None)
    t.start()
    time.sleep(0.4)
    assert not began and log.pending() == []  # waiting, its intent withdrawn
    resumed = time.monotonic()
    log.resume()
    t.join(5)
    assert began and began[0] >= resumed and len(log.pending()) == 1


def test_a_dead_snapshot_pauses_nothing_and_a_long_one_gives_up(tmp_path):
    log = IntentLog(tmp_path, pause_wait_s=0.3)
    gone = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE, text=True)
    pid = int(gone.communicate()[0])
    (tmp_path / PAUSE).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": "1"}))  # ended
    assert not log.paused()
    log.end(log.begin("ingest", "c", ["d"]))
    log.resume()
    log.pause()
    with pytest.raises(StageUnavailable, match="paused writes"):
        log.begin("ingest", "c", ["d"])
    assert log.pending() == []


def test_ingest_cli_snapshot_and_restore_send_the_folder_and_report(tmp_path, capsys, monkeypatch):
    import httpx

    import deployments.cli.ingest as cli

    sent: list[tuple[str, dict]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append((request.url.path, body))
        if request.url.path == "/v1/admin/snapshot":
            return httpx.Response(200, json={"dir": body["dir"], "seconds": 0.1, "collections": {}})
        consistent = body["collections"] != ["bad"]
        return httpx.Response(
            200, json={"dir": body["dir"], "seconds": 0.1, "collections": {"c": {"consistent": consistent}}}
        )

    real_client = httpx.Client
    monkeypatch.setattr(
        cli.httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(handler), base_url=kw["base_url"])
    )
    assert cli.main(["--snapshot", str(tmp_path / "s")]) == 0
    assert cli.main(["--restore", str(tmp_path / "s"), "--collection", "docs"]) == 0
    assert cli.main(["--restore", str(tmp_path / "s"), "--collection", "bad"]) == 3
    assert sent[0] == ("/v1/admin/snapshot", {"dir": str(tmp_path / "s"), "collections": None})
    assert sent[1] == ("/v1/admin/restore", {"dir": str(tmp_path / "s"), "collections": ["docs"]})


def test_shard_files_are_copied_with_their_holes(tmp_path):
    from deployments.vector.sparse_copy import copy_sparse

    src, dst = tmp_path / "wal", tmp_path / "copy"
    with open(src, "wb") as f:  # 32 MB with 8 KB of data at the start and 4 KB in the middle, the rest holes
        f.write(b"a" * 8192)
        f.seek(16 << 20)
        f.write(b"b" * 4096)
        f.truncate(32 << 20)
    copy_sparse(str(src), str(dst))
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_blocks * 512 < 1 << 20  # a plain copy writes 32 MB
