"""A full disk during ingest: the data folder on a size-limited tmpfs this benchmark mounts (root only), filled
while SciFact abstracts are ingested and a reader keeps retrieving; then the space is freed.

    flock /tmp/graphrag-heavy.lock python -m benchmarks.reliability.disk_full [--size-mb 128] [--full-s 20]

The app's pipeline on the real engines in one process (benchmarks/inprocess.py: MiniLM, Qdrant Edge, ArcadeDB's
Bolt server, no Ray Serve), as tests/ingress/test_disk_full.py runs it, with the ingest intent log the ingress
keeps. Each ingest's outcome is counted by the status the ingress answers for it (deployments/ingress/deployment.py:
`StorageFull` 507, `StageTimeout` 504, another `StageUnavailable` 503, anything else is a bug: `other`). Figures:
statuses until the disk is full and for `--full-s` seconds after (one try every `--retry-s`), reads during that
(ok / degraded / failed, p95), and after the filler is removed: seconds to the first accepted ingest, `verify`
consistent, intents pending. Results: benchmarks/results/disk_full.json.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks import use_local_env

use_local_env()

# The app's modules after the environment is set (they read it at import).
from benchmarks.harness import CACHE, DATASETS, cli, command, utc_now, write_json  # noqa: E402
from benchmarks.inprocess import in_process_pipeline  # noqa: E402
from benchmarks.loadgen import percentile  # noqa: E402
from deployments.cli.ingest import read_beir_corpus  # noqa: E402
from deployments.errors import StageTimeout, StageUnavailable, StorageFull  # noqa: E402
from deployments.ingress.intents import IntentLog  # noqa: E402
from deployments.models import Document, IngestRequest, RetrieveRequest  # noqa: E402

QUERIES = ["What lowers blood pressure?", "How do T cells respond to infection?", "Which genes drive tumour growth?"]


def status_of(exc: BaseException | None) -> str:
    """The HTTP status the ingress's exception handlers give this outcome of an ingest."""
    if exc is None:
        return "200"
    if isinstance(exc, StorageFull):
        return "507"
    if isinstance(exc, StageTimeout):
        return "504"
    if isinstance(exc, StageUnavailable):
        return "503"
    return f"other: {type(exc).__name__}"


def mount_tmpfs(where: Path, size_mb: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)], check=True)


def fill(path: Path, leave_bytes: int) -> Path:
    """A file taking all the free space of `path`'s filesystem but `leave_bytes`."""
    filler = path / "filler"
    free = shutil.disk_usage(path).free - leave_bytes
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 20)
        while free > 0:
            f.write(chunk[: min(len(chunk), free)])
            free -= len(chunk)
    return filler


async def try_ingest(pipeline, docs: list[dict]) -> BaseException | None:
    try:
        await pipeline.ingest(IngestRequest(collection="scifact", documents=[Document(**d) for d in docs]))
    except Exception as exc:  # counted by status; the benchmark goes on
        return exc
    return None


async def reader(pipeline, stop: asyncio.Event, out: dict) -> None:
    """Retrieves in a loop until `stop`: how reads fare while the disk is full."""
    latencies: list[float] = []
    counts: Counter[str] = Counter()
    i = 0
    while not stop.is_set():
        t0 = time.monotonic()
        req = RetrieveRequest(collection="scifact", query=QUERIES[i % len(QUERIES)], top_k=10, mode="hybrid+graph")
        try:
            r = await pipeline.retrieve(req)
            counts["degraded" if r.degraded else "ok"] += 1
        except Exception as exc:  # a failed read is the figure, not the end of the run
            counts["failed"] += 1
            out.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}"[:300])
        latencies.append(time.monotonic() - t0)
        i += 1
        await asyncio.sleep(0.05)
    latencies.sort()
    out.update(counts, requests=len(latencies), p95_ms=round(percentile(latencies, 95) * 1000, 1))


async def run(args, disk: Path) -> dict:
    corpus = list(read_beir_corpus(DATASETS / "scifact" / "corpus.jsonl.gz"))
    config = {
        "data_dir": str(disk / "data"),
        "embedder": {"cache_dir": str(CACHE / "models")},  # the ONNX export stays off the small disk
        "vector": {"min_free_disk_mb": args.min_free_mb},
    }
    out: dict = {
        "date": utc_now(),
        "command": command(),
        "tmpfs_mb": args.size_mb,
        "min_free_disk_mb": args.min_free_mb,
    }
    out["load_average_1m_start"] = round(os.getloadavg()[0], 2)
    async with in_process_pipeline(config) as pipeline:
        pipeline.intents = IntentLog(disk / "data" / "intents")
        assert await try_ingest(pipeline, corpus[: args.seed_docs]) is None
        filler = fill(disk, leave_bytes=(args.min_free_mb + args.headroom_mb) * 2**20)
        out["free_mb_after_filling"] = round(shutil.disk_usage(disk).free / 2**20, 1)
        reads: dict = {}
        stop = asyncio.Event()
        reading = asyncio.ensure_future(reader(pipeline, stop, reads))
        until_full: Counter[str] = Counter()
        errors: list[str] = []
        at = args.seed_docs
        t_start = time.monotonic()
        while True:  # batches until the first refusal
            exc = await try_ingest(pipeline, corpus[at : at + args.batch])
            at += args.batch
            until_full[status_of(exc)] += 1
            if exc is not None:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                break
            if at >= len(corpus):
                raise SystemExit("the corpus ran out before the disk filled: lower --size-mb or --headroom-mb")
        out["seconds_to_full"] = round(time.monotonic() - t_start, 1)
        while_full: Counter[str] = Counter()
        deadline = time.monotonic() + args.full_s
        while time.monotonic() < deadline:  # clients retrying against the full disk
            exc = await try_ingest(pipeline, corpus[at : at + args.batch])
            while_full[status_of(exc)] += 1
            if exc is not None and len(errors) < 5:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
            at += 0 if exc is not None else args.batch
            await asyncio.sleep(args.retry_s)
        stop.set()
        await reading
        out["ingest_until_full"] = dict(until_full)
        out["ingest_while_full"] = dict(while_full)
        out["ingest_errors_sample"] = errors
        out["reads_during"] = reads
        filler.unlink()
        freed = time.monotonic()
        tries = 0
        while True:  # the first accepted ingest after space returns
            tries += 1
            exc = await try_ingest(pipeline, corpus[at : at + args.batch])
            if exc is None:
                break
            await asyncio.sleep(0.1)
        out["after_freeing"] = {"seconds_to_first_accepted_ingest": round(time.monotonic() - freed, 2), "tries": tries}
        report = await pipeline.verify("scifact")
        out["after_freeing"]["verify"] = report.model_dump(
            include={"consistent", "documents", "vector_chunks", "graph_chunks", "pending_intents"}
        )
        out["after_freeing"]["intents_pending"] = len(pipeline.intents.pending())
    out["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    parser = cli(__doc__)
    parser.add_argument("--size-mb", type=int, default=128, help="the tmpfs holding the data folder")
    parser.add_argument("--min-free-mb", type=int, default=32, help="vector.min_free_disk_mb")
    parser.add_argument("--headroom-mb", type=int, default=4, help="free space above the floor after filling")
    parser.add_argument("--seed-docs", type=int, default=50, help="SciFact abstracts ingested before filling")
    parser.add_argument("--batch", type=int, default=8, help="documents per ingest")
    parser.add_argument("--full-s", type=float, default=20.0, help="seconds of retried ingests on the full disk")
    parser.add_argument("--retry-s", type=float, default=0.5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("mounting a tmpfs needs root")
    with tempfile.TemporaryDirectory(prefix="graphrag-disk-full-") as tmp:
        disk = Path(tmp) / "disk"
        mount_tmpfs(disk, args.size_mb)
        try:
            out = asyncio.run(run(args, disk))
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
    print(write_json("disk_full.json", out))


if __name__ == "__main__":
    main()
