"""The soak's churn against the embedded vector store alone: one one-point document written, then deleted, over and
over (EdgeVectorStore as the Vector stage runs it: flushed writes, `optimize` every 1,024 written points), and this
process's RSS every 256 cycles. Asks whether the Vector replica's memory grows with churn, steps, or plateaus.

    python -m benchmarks.reliability.edge_churn [--cycles 16384]     # ~5 min → results/edge_churn.json

Random unit vectors (384-d, MiniLM's size), the text's BM25 terms (each text names its document's number, as the
soak's churn documents do) and the text as payload; no embedder, no Ray.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid

import numpy as np

from benchmarks.harness import cli, command, utc_now, write_json
from deployments.vector.edge import EdgeVectorStore
from deployments.vector.lexical import LexicalEncoder
from deployments.vector.store import StoredPoint


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


async def churn(cycles: int, every: int = 256) -> list[dict]:
    rng, lexical = np.random.default_rng(0), LexicalEncoder()
    rows = []
    with tempfile.TemporaryDirectory(prefix="graphrag-churn-") as folder:
        store = EdgeVectorStore(folder)
        await store.create("churn", 384)
        started = time.monotonic()
        for i in range(cycles):
            vector = rng.standard_normal(384).astype(np.float32)
            doc = f"churn-{i}"
            point_id = str(uuid.uuid5(uuid.NAMESPACE_URL, doc))
            text = f"Churn document {i}. Which database ships a Bolt protocol plugin? " * 3
            payload = {"doc_id": doc, "chunk_index": 0, "text": text}
            unit = (vector / np.linalg.norm(vector)).tolist()
            await store.replace_documents(
                "churn", [doc], [StoredPoint(point_id, unit, payload, lexical.document(text))]
            )
            await store.delete_documents("churn", [doc])
            if i % every == 0 or i == cycles - 1:
                rows.append({"cycle": i, "seconds": round(time.monotonic() - started, 1), "rss_mb": round(rss_mb(), 1)})
    return rows


def main() -> None:
    ap = cli(__doc__)
    ap.add_argument("--cycles", type=int, default=16384)
    args = ap.parse_args()
    rows = asyncio.run(churn(args.cycles))
    rss = [r["rss_mb"] for r in rows]
    out = {
        "cycles": args.cycles,
        "rss_mb_start": rss[0],
        "rss_mb_max": max(rss),
        "rss_mb_end": rss[-1],
        "samples": rows,
        "command": command(),
        "date": utc_now(),
    }
    write_json("edge_churn.json", out)
    print({k: v for k, v in out.items() if k != "samples"})


if __name__ == "__main__":
    main()
