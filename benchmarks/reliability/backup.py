"""Backup and restore: a snapshot of a SciFact collection taken while another collection is being ingested,
restored into an empty data folder; the same top-10 (ids and scores) for 100 SciFact test queries, and `verify`.

    flock /tmp/graphrag-heavy.lock python -m benchmarks.reliability.backup [--docs 1000]

The app's pipeline on the real engines in one process (benchmarks/inprocess.py: MiniLM, Qdrant Edge, ArcadeDB's
Bolt server, no Ray Serve); the snapshot and restore are the code behind POST /v1/admin/snapshot and /restore
(ingress/backups.py), with the intent log the ingress keeps. `--docs`: the first N corpus documents (all 5,183
take ~10 min to ingest on this machine). Results: benchmarks/results/backup.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks import use_local_env

use_local_env()

# The app's modules after the environment is set (they read it at import).
from benchmarks.inprocess import in_process_pipeline  # noqa: E402
from deployments.cli.ingest import read_beir_corpus  # noqa: E402
from deployments.ingress.backups import Backups  # noqa: E402
from deployments.ingress.intents import IntentLog  # noqa: E402
from deployments.models import Document, IngestRequest, RetrieveRequest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT.parent / "shared" / "datasets" / "scifact"
if not DATASET.exists():
    DATASET = Path("/work/shared/datasets/scifact")
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ROOT / "benchmarks" / ".cache" / "models"  # the ONNX export, shared: not redone per data folder


def app_args(data_dir: Path, backup_root: Path) -> dict:
    return {"data_dir": str(data_dir), "embedder": {"cache_dir": str(MODELS)}, "backup": {"root": str(backup_root)}}


async def ingest(pipeline, collection: str, docs: list[dict], batch: int, max_s: float = float("inf")) -> int:
    """Batches in order until done or `max_s` has passed; returns how many documents went in."""
    deadline = time.monotonic() + max_s
    done = 0
    for i in range(0, len(docs), batch):
        if time.monotonic() > deadline:
            break
        await pipeline.ingest(
            IngestRequest(collection=collection, documents=[Document(**d) for d in docs[i : i + batch]])
        )
        done = min(i + batch, len(docs))
    return done


async def top10(pipeline, queries: list[str]) -> list[list[tuple[str, float]]]:
    out = []
    for q in queries:
        r = await pipeline.retrieve(RetrieveRequest(collection="scifact", query=q, top_k=10, mode="hybrid+graph"))
        out.append([(h.chunk_id, h.score) for h in r.hits])
    return out


def folder_bytes(path: Path) -> int:
    """Bytes on disk (the engines' files are mostly holes: their apparent size says little)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


async def run(args: argparse.Namespace) -> dict:
    corpus = list(read_beir_corpus(DATASET / "corpus.jsonl.gz"))
    # The busy collection takes the documents after the snapshotted ones, wrapping around to the first when the
    # snapshotted collection is the whole corpus (another collection: the same ids do not clash).
    docs, busy_docs = corpus[: args.docs], (corpus[args.docs :] + corpus)[: args.busy_docs]
    lines = (DATASET / "queries.test.jsonl").read_text(encoding="utf-8").splitlines()
    queries = [json.loads(line)["text"] for line in lines if line.strip()][: args.queries]
    out: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "corpus": "SciFact",
        "documents": len(docs),
        "queries": len(queries),
        "mode": "hybrid+graph",
        "load_average_1m_start": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory(prefix="graphrag-backup-") as tmp:
        snap = Path(tmp) / "backups" / "snapshot"  # the backup root both servers share
        async with in_process_pipeline(app_args(Path(tmp) / "a", snap.parent)) as pipeline:
            pipeline.intents = IntentLog(Path(tmp) / "a" / "intents")
            t0 = time.monotonic()
            out["documents"] = await ingest(pipeline, "scifact", docs, 64, args.max_ingest_s)
            out["ingest_s"] = round(time.monotonic() - t0, 1)
            print(f"ingested {out['documents']} documents in {out['ingest_s']}s", flush=True)
            before = await top10(pipeline, queries)
            busy = asyncio.ensure_future(ingest(pipeline, "busy", busy_docs, 8))  # ingest goes on during the snapshot
            await asyncio.sleep(2)
            taken = await Backups(pipeline).snapshot(snap.name)
            busy_during = not busy.done()
            await busy
            out["snapshot"] = {
                "seconds": taken.seconds,
                "while_ingesting": busy_during,
                "collections": {n: c.model_dump() for n, c in taken.collections.items()},
                "snapshot_bytes": folder_bytes(snap),
                "source_data_bytes": folder_bytes(Path(tmp) / "a" / "qdrant")
                + folder_bytes(Path(tmp) / "a" / "arcadedb"),
            }
            out["source_verify"] = {n: (await pipeline.verify(n)).consistent for n in ("scifact", "busy")}
        async with in_process_pipeline(app_args(Path(tmp) / "b", snap.parent)) as pipeline:
            pipeline.intents = IntentLog(Path(tmp) / "b" / "intents")
            restored = await Backups(pipeline).restore(snap.name)
            out["restore"] = {
                "seconds": restored.seconds,
                "verify": {
                    n: r.model_dump(include={"consistent", "documents", "vector_chunks", "graph_chunks"})
                    for n, r in restored.collections.items()
                },
            }
            after = await top10(pipeline, queries)
    same = sum(a == b for a, b in zip(before, after))
    same_ids = sum([i for i, _ in a] == [i for i, _ in b] for a, b in zip(before, after))
    diffs = [abs(x[1] - y[1]) for a, b in zip(before, after) for x, y in zip(a, b)]
    out["top10"] = {
        "same_ids_and_scores": same,
        "same_ids": same_ids,
        "of": len(queries),
        "max_score_diff": max(diffs, default=0.0),
    }
    out["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000, help="SciFact documents in the snapshotted collection")
    parser.add_argument(
        "--busy-docs", type=int, default=200, help="documents ingested into another collection meanwhile"
    )
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--max-ingest-s", type=float, default=float("inf"), help="stop ingesting after this long (a bounded run)"
    )
    args = parser.parse_args()
    out = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backup.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
