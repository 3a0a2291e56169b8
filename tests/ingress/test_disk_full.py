"""A full disk during ingest, on the real engines (Qdrant Edge, ArcadeDB's Bolt server) with the data folder on a
size-limited tmpfs this test mounts (root only; skipped otherwise): the ingest is refused clearly (507), reads go
on, and once space is back nothing is half-written (verify consistent, no intent pending)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.inprocess import in_process_pipeline
from deployments.errors import StorageFull
from deployments.ingress.intents import IntentLog
from deployments.models import Document, IngestRequest, RetrieveRequest
from tests.fakes import sample_documents
from tests.openai_server import OpenAIProtocolServer

SIZE_MB = 128
KEEP_FREE_MB = 32  # vector.min_free_disk_mb


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path, leave_bytes: int) -> Path:
    """A file that takes all the free space of `path`'s filesystem but `leave_bytes`."""
    filler = path / "filler"
    free = shutil.disk_usage(path).free - leave_bytes
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 20)
        while free > 0:
            f.write(chunk[: min(len(chunk), free)])
            free -= len(chunk)
    return filler


def documents(prefix: str, n: int) -> list[Document]:
    base = sample_documents()
    return [Document(id=f"{prefix}{i}-{d['id']}", text=d["text"] * 4) for i in range(n) for d in base]


async def test_full_disk_refuses_ingest_keeps_reads_and_leaves_nothing_half_written(small_disk):
    with OpenAIProtocolServer() as embeddings:
        args = {
            "data_dir": str(small_disk / "data"),
            "embedder": {"openai_base_url": embeddings.base_url, "max_retries": 0},
            "vector": {"min_free_disk_mb": KEEP_FREE_MB},
        }
        async with in_process_pipeline(args) as pipeline:
            pipeline.intents = IntentLog(small_disk / "data" / "intents")
            await pipeline.ingest(
                IngestRequest(collection="docs", documents=[Document(**d) for d in sample_documents()])
            )
            query = RetrieveRequest(collection="docs", query="What is Qdrant Edge?", top_k=5, mode="hybrid+graph")
            assert (await pipeline.retrieve(query)).hits
            filler = fill(small_disk, leave_bytes=(KEEP_FREE_MB + 2) * 2**20)
            accepted = 0
            with pytest.raises(StorageFull, match="no space left on device") as refused:
                for i in range(200):  # the disk fills up under the ingests
                    await pipeline.ingest(IngestRequest(collection="docs", documents=documents(f"b{i}-", 4)))
                    accepted += 1
            assert accepted > 0 and refused.value.stage == "ingest"
            read = await pipeline.retrieve(query)  # reads keep answering, from both stores
            assert read.hits and not read.degraded
            filler.unlink()
            report = await pipeline.verify("docs")
            assert report.consistent, report
            assert report.pending_intents == 0
            await pipeline.ingest(IngestRequest(collection="docs", documents=documents("after-", 1)))
            assert (await pipeline.verify("docs")).consistent
