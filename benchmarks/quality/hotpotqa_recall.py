"""Multi-hop recall on HotpotQA (100 questions, 994 passages): supporting-passage Recall@2 and Recall@5 of
POST /v1/retrieve with the graph stage on (`mode: hybrid+graph`) and off (`mode: hybrid`: the vector stage's dense
+ lexical retrieval alone, same reranker); `graph_linked_only` is the graph without expansion (max_hops 0).

    python -m benchmarks.quality.hotpotqa_recall                       # starts its own app (own data dir and port)
    python -m benchmarks.quality.hotpotqa_recall --url http://127.0.0.1:8000

Each passage is ingested through the API as one document: id = its Wikipedia title, text = title + sentences.
Recall@k of a question = share of its supporting titles among the first k distinct documents of the hits.
Writes benchmarks/results/hotpotqa.json and hotpotqa.md, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import use_local_env  # noqa: E402

use_local_env()

import httpx  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import DATASETS, RESULTS  # noqa: E402
from deployments.cli.ingest import IngestState, ingest  # noqa: E402
from deployments.client import GraphRAGClient  # noqa: E402

DEFAULT_DATASET = DATASETS / "hotpotqa-100"
KS = (2, 5)
# Settings are tuned on dev only (benchmarks/quality/graph_eval.py --grid); test is reported, never tuned on.
SPLITS = {"dev": range(0, 50), "test": range(50, 100), "all": range(0, 100)}
VARIANTS = {
    "default": {},  # the config's retrieval.mode
    "graph_on": {"mode": "hybrid+graph"},
    "graph_off": {"mode": "hybrid"},
    "dense": {"mode": "dense"},
    "lexical": {"mode": "lexical"},
    "graph_linked_only": {"mode": "hybrid+graph", "max_hops": 0},
}


def load(dataset: Path) -> tuple[list[dict], list[dict]]:
    corpus = json.loads((dataset / "hotpotqa_train_corpus.json").read_text())
    questions = json.loads((dataset / "hotpotqa_train.json").read_text())
    docs = [
        {"id": title, "text": f"{title}\n\n{''.join(sentences).strip()}", "metadata": {"title": title}}
        for title, sentences in corpus.items()
    ]
    return docs, questions


def distinct_docs(hits: list[dict]) -> list[str]:
    out: list[str] = []
    for hit in hits:
        if hit["doc_id"] not in out:
            out.append(hit["doc_id"])
    return out


def measure(client: httpx.Client, collection: str, questions: list[dict], variant: dict) -> dict:
    """Recall per split (dev = questions 0-49, test = 50-99, all), p50 latency and the graph stage's p50 span."""
    per_question: list[dict[int, float]] = []
    latencies, graph_ms = [], []
    degraded = 0
    mode = None
    for q in questions:
        gold = {title for title, _ in q["supporting_facts"]}
        started = time.perf_counter()
        resp = client.post(
            "/v1/retrieve", json={"collection": collection, "query": q["question"], "top_k": 20, **variant}
        )
        latencies.append(time.perf_counter() - started)
        resp.raise_for_status()
        body = resp.json()
        degraded += bool(body["degraded"])
        mode = body.get("mode")
        if body["timings"].get("graph"):
            graph_ms.append(body["timings"]["graph"]["duration_ms"])
        ranked = distinct_docs(body["hits"])
        per_question.append({k: len(gold & set(ranked[:k])) / len(gold) for k in KS})
    n = len(questions)
    latencies.sort()
    graph_ms.sort()
    out = {
        split: {f"recall@{k}": round(sum(per_question[i][k] for i in ids) / len(ids), 4) for k in KS}
        for split, ids in SPLITS.items()
        if ids.stop <= n
    }
    return {
        **{f"recall@{k}": round(sum(r[k] for r in per_question) / n, 4) for k in KS},
        **out,
        "mode": mode,
        "questions": n,
        "degraded_responses": degraded,
        "p50_ms": round(1000 * latencies[n // 2], 1),
        "graph_p50_ms": round(graph_ms[len(graph_ms) // 2], 1) if graph_ms else None,
    }


def run_with(client, args: argparse.Namespace, ingest_client=None) -> dict:
    """`client.post` retrieves; `ingest_client` (a GraphRAGClient; default `client`) takes graphrag-ingest's batches."""
    docs, questions = load(args.dataset)
    batches = ingest_client or client
    report = ingest(batches, args.collection, docs, IngestState(None), batch_size=args.batch_size, total=len(docs))
    print(f"ingested {report.sent} passages ({report.chunks} chunks) in {report.seconds:.1f}s", file=sys.stderr)
    results = {name: measure(client, args.collection, questions, v) for name, v in VARIANTS.items()}
    results["ingest_seconds"] = report.seconds
    results["passages"] = len(docs)
    return results


def run(url: str, args: argparse.Namespace) -> dict:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    with (
        httpx.Client(base_url=url, timeout=600, headers=headers) as client,
        GraphRAGClient(url, api_key=args.api_key, http_client=client) as typed,
    ):
        return run_with(client, args, typed)


def table(results: dict) -> str:
    rows = [
        "| variant (mode) | dev R@2 | dev R@5 | test R@2 | test R@5 | all R@2 | all R@5 | p50 latency (ms) | graph p50 (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        r = results[name]
        cells = " | ".join(f"{r[s][f'recall@{k}']:.3f}" for s in ("dev", "test", "all") for k in KS)
        rows.append(
            f"| {name} ({r['mode']}) | {cells} | {r['p50_ms']:.0f} | {r['graph_p50_ms'] if r['graph_p50_ms'] is not None else '-'} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running graphrag-serve; default: start one locally")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--collection", default="hotpotqa100")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--api-key", default=os.environ.get("GRAPHRAG_API_KEY"), help="for --url behind auth")
    parser.add_argument("--port", type=int, default=0, help="port of the local app (0 = a free one)")
    parser.add_argument("--out", type=Path, default=RESULTS / "hotpotqa.json")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override for the local app"
    )
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="measure only these (default: all)")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="the pipeline and real engines in this process, without Ray Serve (benchmarks/inprocess.py)",
    )
    args = parser.parse_args()
    for name in set(VARIANTS) - set(args.variants or VARIANTS):
        del VARIANTS[name]

    command = harness.command()
    if args.url:
        results = run(args.url, args)
    elif args.in_process:
        from benchmarks.inprocess import InProcessClient

        overrides = dict(item.split("=", 1) for item in args.set)
        with tempfile.TemporaryDirectory(prefix="graphrag-hotpotqa-") as data_dir:
            client = InProcessClient({"data_dir": data_dir, **overrides})
            try:
                results = run_with(client, args)
            finally:
                client.close()
        results["transport"] = "in-process (no Ray Serve): latencies exclude the hops between replicas"
    else:
        overrides = dict(item.split("=", 1) for item in args.set)
        with tempfile.TemporaryDirectory(prefix="graphrag-hotpotqa-") as data_dir:
            with harness.local_app({"data_dir": data_dir, **overrides}, "graphrag-hotpotqa", args.port) as url:
                results = run(url, args)
    out = {
        "graph_on": {k: results["graph_on"][k] for k in ("recall@2", "recall@5")},
        "graph_off": {k: results["graph_off"][k] for k in ("recall@2", "recall@5")},
        "splits": {name: {s: results[name][s] for s in SPLITS} for name in VARIANTS},
        "tuned_on": "dev (questions 0-49)",
        "command": command,
        "date": harness.utc_now(),
        "details": results,
    }
    harness.write_json(args.out, out)
    md = f"# HotpotQA-100 supporting-passage recall\n\n{table(results)}\n\n`{command}` — {out['date']}\n"
    args.out.with_suffix(".md").write_text(md)
    print(table(results))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
