"""Retrieval quality on BEIR SciFact through the HTTP API: nDCG@10, Recall@100 and MRR@10 per retrieval mode,
beside published baselines.

    python -m benchmarks.quality.scifact                        # own app (temp data dir, free port): ingest, 300 test queries
    python -m benchmarks.quality.scifact --split train          # the 809 train queries (tuning); writes scifact-train.*
    python -m benchmarks.quality.scifact --url http://127.0.0.1:8000 --skip-ingest   # an app that already holds `scifact`
    python -m benchmarks.quality.scifact --in-process --split train,test --modes hybrid,hybrid+graph   # no Ray; one ingest, both splits

The corpus (5,183 abstracts, title + text) is ingested through POST /v1/ingest; every query goes through
POST /v1/retrieve with top_k=100 once per mode. Chunk hits are aggregated to documents by their best chunk
(BEIR scores documents). Writes benchmarks/results/scifact.json and scifact.md, and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from benchmarks import use_local_env  # noqa: E402

use_local_env()

import httpx  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import DATASETS, RESULTS, ROOT  # noqa: E402
from benchmarks.metrics import docs_by_max_score, evaluate  # noqa: E402
from deployments.cli.ingest import IngestState, ingest, read_beir_corpus  # noqa: E402
from deployments.client import GraphRAGClient  # noqa: E402

DEFAULT_DATASET = DATASETS / "scifact"
MODES = ("dense", "lexical", "hybrid", "hybrid+graph")
TOP_K = 100  # Recall@100 needs 100 hits; the API's maximum
# The local app: abstracts are ~200 words (99th percentile 473), so most are one chunk, as BEIR scores them;
# every stage hands 100 candidates to fusion.
APP_ARGS = {"chunking.max_words": 512, "chunking.overlap_words": 64, "retrieval.candidates": TOP_K}
# nDCG@10 of published systems on the SciFact test split.
BASELINES = [
    ("BM25 (BEIR paper, Elasticsearch)", 0.665),
    ("BM25 (Anserini, flat)", 0.679),
    ("all-MiniLM-L6-v2 dense (MTEB)", 0.645),
    ("BM25 top-100 + ms-marco-MiniLM-L-6-v2 cross-encoder (BEIR)", 0.688),
]


def load_queries(dataset: Path, split: str) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """The split's queries and qrels. Train = queries.jsonl minus the test ids, judged by qrels/train.tsv."""
    qrels: dict[str, dict[str, int]] = {}
    with open(dataset / "qrels" / f"{split}.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    test_ids = {json.loads(line)["_id"] for line in open(dataset / "queries.test.jsonl") if line.strip()}
    source = "queries.test.jsonl" if split == "test" else "queries.jsonl"
    queries = {}
    for line in open(dataset / source):
        if line.strip():
            row = json.loads(line)
            if (row["_id"] in test_ids) == (split == "test") and row["_id"] in qrels:
                queries[row["_id"]] = row["text"]
    return queries, {q: rel for q, rel in qrels.items() if q in queries}


async def run_mode(
    client: httpx.AsyncClient, collection: str, queries: dict[str, str], request: dict, concurrency: int
) -> tuple[dict, list[float], int]:
    """Ranked doc ids per query, latencies (s), and how many responses reported a degraded stage."""
    gate = asyncio.Semaphore(concurrency)
    run: dict[str, list[str]] = {}
    latencies: list[float] = []
    degraded = 0

    async def one(qid: str, text: str) -> None:
        nonlocal degraded
        async with gate:
            started = time.perf_counter()
            resp = await client.post(
                "/v1/retrieve", json={"collection": collection, "query": text, "top_k": TOP_K, **request}
            )
            latencies.append(time.perf_counter() - started)
        if resp.status_code != 200:
            raise RuntimeError(f"query {qid}: HTTP {resp.status_code}: {resp.text[:300]}")
        body = resp.json()
        degraded += bool(body["degraded"])
        run[qid] = docs_by_max_score([(h["doc_id"], h["score"]) for h in body["hits"]])

    tasks = [asyncio.create_task(one(q, t)) for q, t in queries.items()]
    done = 0
    for task in asyncio.as_completed(tasks):
        await task
        done += 1
        if done % 100 == 0 or done == len(tasks):
            print(f"  {done}/{len(tasks)} queries", file=sys.stderr, flush=True)
    return run, latencies, degraded


class _AsyncInProcess:
    """benchmarks/inprocess.py's synchronous client behind the `await client.post(...)` of httpx.AsyncClient."""

    def __init__(self, client):
        self._client = client

    async def __aenter__(self) -> _AsyncInProcess:
        return self

    async def __aexit__(self, *exc) -> None:
        return None

    async def post(self, path: str, json: dict):
        return await asyncio.to_thread(self._client.post, path, json)


async def measure(url, args: argparse.Namespace, queries: dict[str, str], qrels: dict) -> dict:
    """`url`: the app's base URL, or an in-process client (benchmarks/inprocess.py)."""
    extra = {} if args.rerank == "default" else {"rerank": args.rerank == "on"}
    opened = httpx.AsyncClient(base_url=url, timeout=120) if isinstance(url, str) else _AsyncInProcess(url)
    async with opened as client:
        probe = await client.post("/v1/retrieve", json={"collection": args.collection, "query": "protein", "top_k": 1})
        probe.raise_for_status()
        default_mode = probe.json()["mode"]
        results = {}
        for mode in args.modes:
            print(f"mode {mode}: {len(queries)} queries", file=sys.stderr, flush=True)
            started = time.perf_counter()
            run, latencies, degraded = await run_mode(
                client, args.collection, queries, {"mode": mode, **extra}, args.concurrency
            )
            metrics = {k: round(v, 4) for k, v in evaluate(qrels, run).items()}
            latencies.sort()
            results[mode] = {
                **metrics,
                "p50_ms": round(1000 * statistics.median(latencies), 1),
                "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
                "seconds": round(time.perf_counter() - started, 1),
                "degraded_responses": degraded,
            }
            print(f"  {mode}: {metrics}", file=sys.stderr, flush=True)
    return {"default_mode": default_mode, "modes": results}


def table(out: dict) -> str:
    rows = ["| system | nDCG@10 | Recall@100 | MRR@10 |", "|---|---|---|---|"]
    rows += [f"| {name} | {ndcg:.3f} | | |" for name, ndcg in BASELINES]
    for mode, m in out["modes"].items():
        label = f"**graphrag-serve `{mode}`**" + (" (default)" if mode == out["default_mode"] else "")
        rows.append(f"| {label} | {m['ndcg@10']:.3f} | {m['recall@100']:.3f} | {m['mrr@10']:.3f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running graphrag-serve; default: start one locally")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--split", default="test", help="test, train, or both as 'train,test' (one ingest)")
    parser.add_argument("--collection", default="scifact")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, of: " + ", ".join(MODES))
    parser.add_argument("--rerank", choices=("default", "on", "off"), default="default", help="the requests' `rerank`")
    parser.add_argument("--skip-ingest", action="store_true", help="the collection is already ingested (with --url)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--batch-size", type=int, default=128, help="documents per ingest request")
    parser.add_argument("--port", type=int, default=0, help="port of the local app (0 = a free one)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override for the local app"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="default: benchmarks/results/scifact.json (scifact-train.json for --split train); one split only",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="the pipeline and real engines in this process, without Ray Serve (benchmarks/inprocess.py)",
    )
    args = parser.parse_args()
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    if not splits or set(splits) - {"train", "test"}:
        parser.error("--split: test, train or train,test")
    if args.out is not None and len(splits) > 1:
        parser.error("--out takes one split")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(args.modes) - set(MODES):
        parser.error(f"unknown modes {sorted(unknown)}")
    command = harness.command()
    started = time.perf_counter()
    per_split = {split: load_queries(args.dataset, split) for split in splits}
    for split, (queries, _) in per_split.items():
        print(f"SciFact {split}: {len(queries)} queries with judgements", file=sys.stderr, flush=True)

    def evaluate_at(url, client=None) -> dict:
        """Ingests once (unless --skip-ingest), then measures every split; `client` for an in-process app."""
        ingest_report = None
        if not args.skip_ingest:
            docs = list(read_beir_corpus(args.dataset / "corpus.jsonl.gz"))
            with GraphRAGClient(url, timeout=900) if client is None else nullcontext(client) as sync_client:
                report = ingest(
                    sync_client, args.collection, docs, IngestState(None), batch_size=args.batch_size, total=len(docs)
                )
            ingest_report = {"documents": report.sent, "chunks": report.chunks, "seconds": report.seconds}
            print(
                f"ingested {report.sent} documents ({report.chunks} chunks) in {report.seconds:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        target = url if client is None else client
        return {
            split: {**asyncio.run(measure(target, args, queries, qrels)), "ingest": ingest_report}
            for split, (queries, qrels) in per_split.items()
        }

    transport = "HTTP"
    if args.url:
        by_split = evaluate_at(args.url)
        app_args = None
    elif args.in_process:
        from benchmarks.inprocess import InProcessClient

        app_args = {**APP_ARGS, **dict(item.split("=", 1) for item in args.set)}
        with tempfile.TemporaryDirectory(prefix="graphrag-scifact-") as data_dir:
            client = InProcessClient({"data_dir": data_dir, **app_args})
            try:
                by_split = evaluate_at(None, client)
            finally:
                client.close()
        transport = "in-process (no Ray Serve): the app's pipeline and real engines; latencies exclude the hops between replicas"
    else:
        app_args = {**APP_ARGS, **dict(item.split("=", 1) for item in args.set)}
        with tempfile.TemporaryDirectory(prefix="graphrag-scifact-") as data_dir:
            print("starting the app ...", file=sys.stderr, flush=True)
            with harness.local_app({"data_dir": data_dir, **app_args}, "graphrag-scifact", args.port) as url:
                by_split = evaluate_at(url)
    for split, results in by_split.items():
        queries = per_split[split][0]
        out = {
            "default_mode": results["default_mode"],
            "modes": {m: {k: r[k] for k in ("ndcg@10", "recall@100", "mrr@10")} for m, r in results["modes"].items()},
            "command": command,
            "date": harness.utc_now(),
            "split": split,
            "queries": len(queries),
            "rerank": args.rerank,
            "app_args": app_args,
            "transport": transport,
            "baselines_ndcg@10": dict(BASELINES),
            "details": {
                m: {k: v for k, v in r.items() if k not in ("ndcg@10", "recall@100", "mrr@10")}
                for m, r in results["modes"].items()
            },
            "ingest": results["ingest"],
            "total_seconds": round(time.perf_counter() - started, 1),
        }
        path = args.out or RESULTS / ("scifact.json" if split == "test" else "scifact-train.json")
        harness.write_json(path, out)
        md = f"# SciFact ({split} split, {len(queries)} queries)\n\n{table(out)}\n\n`{command}` — {out['date']}\n"
        path.with_suffix(".md").write_text(md)
        print(table(out))
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} in {out['total_seconds']:.0f}s")


if __name__ == "__main__":
    main()
