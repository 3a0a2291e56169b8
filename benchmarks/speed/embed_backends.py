"""The embedding backends side by side, in this one process: quality on SciFact dense and raw questions/s.

    python -m benchmarks.speed.embed_backends                   # torch, onnx, onnx-int8: quality + speed
    python -m benchmarks.speed.embed_backends --skip-quality    # speed only (seconds instead of minutes)

Quality: the SciFact corpus chunked as the app chunks it (benchmarks/quality/scifact.py's settings), every chunk embedded
by each backend (cached under benchmarks/.cache/, minutes per backend on 2 shared cores), exact cosine search,
documents ranked by their best chunk, nDCG@10 / Recall@100 on the 300 test queries. This is the app's `dense`
mode without Qdrant (HNSW) in between, so the backends are compared on the vectors alone.
Speed: HotpotQA-100 questions one at a time and in batches of 8 and 32, `threads` intra-op threads, with and
without ONNX Runtime's spinning threads. Writes benchmarks/results/embed_backends.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks import use_local_env

use_local_env()

import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import CACHE, DATASETS, RESULTS  # noqa: E402
from benchmarks.metrics import docs_by_max_score, evaluate  # noqa: E402
from benchmarks.quality.scifact import APP_ARGS, DEFAULT_DATASET, load_queries  # noqa: E402
from deployments.cli.ingest import read_beir_corpus  # noqa: E402
from deployments.config import ChunkingConfig, EmbedderConfig  # noqa: E402
from deployments.embedder.backends import SentenceTransformerEmbedder, resolve_model_path  # noqa: E402
from deployments.embedder.onnx_backend import OnnxSession, export_onnx, onnx_model_path  # noqa: E402
from deployments.ingress.chunking import chunk_document  # noqa: E402
from deployments.models import Document  # noqa: E402

HOTPOT = DATASETS / "hotpotqa-100" / "hotpotqa_train.json"
MODEL = "all-MiniLM-L6-v2"


def onnx_paths() -> dict[str, Path]:
    """The fp32 export (as the app makes it) and its int8 dynamic quantization, both cached under .cache/."""
    model_dir = Path(resolve_model_path(MODEL))
    fp32 = onnx_model_path(model_dir, CACHE / "models", MODEL)
    if not fp32.is_file():
        export_onnx(model_dir, fp32)
    int8 = fp32.with_name(fp32.stem + "-int8.onnx")
    if not int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return {"onnx": fp32, "onnx-int8": int8}


class Encoders:
    """name -> encode(texts, batch_size) -> unit vectors (np.ndarray), all synchronous, in this process."""

    def __init__(self, threads: int, spinning: bool):
        import torch

        self.threads = threads
        torch.set_num_threads(threads)
        self._torch = SentenceTransformerEmbedder(EmbedderConfig(backend="torch", num_threads=threads))._load()
        model_dir = Path(resolve_model_path(MODEL))
        self._onnx = {name: OnnxSession(path, model_dir, threads, spinning) for name, path in onnx_paths().items()}

    def names(self) -> list[str]:
        return ["torch", *self._onnx]

    def encode(self, name: str, texts: list[str], batch_size: int) -> np.ndarray:
        if name == "torch":
            return self._torch.encode(
                texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return self._onnx[name].encode(texts, batch_size)


def scifact_chunks(dataset: Path, max_docs: int | None = None) -> tuple[list[str], list[str]]:
    chunking = ChunkingConfig(
        max_words=APP_ARGS["chunking.max_words"], overlap_words=APP_ARGS["chunking.overlap_words"]
    )
    doc_ids, texts = [], []
    for row in list(read_beir_corpus(dataset / "corpus.jsonl.gz"))[:max_docs]:
        for chunk in chunk_document(Document(**row), chunking):
            doc_ids.append(chunk.doc_id)
            texts.append(chunk.text)
    return doc_ids, texts


def quality(encoders: Encoders, dataset: Path, split: str, max_docs: int | None = None) -> dict:
    doc_ids, texts = scifact_chunks(dataset, max_docs)
    queries, qrels = load_queries(dataset, split)
    if max_docs is not None:  # a subset: the queries with a relevant document in it, judged on it alone
        kept = set(doc_ids)
        qrels = {q: {d: r for d, r in rel.items() if d in kept} for q, rel in qrels.items()}
        qrels = {q: rel for q, rel in qrels.items() if any(r > 0 for r in rel.values())}
        queries = {q: t for q, t in queries.items() if q in qrels}
    qids = list(queries)
    out = {"chunks": len(texts), "queries": len(qids), "split": split, "documents": max_docs or "all"}
    for name in encoders.names():
        cached = CACHE / f"scifact-{name}-{len(texts)}.npy"
        if cached.is_file():
            corpus = np.load(cached)
        else:
            start = time.perf_counter()
            corpus = encoders.encode(name, texts, 64)
            print(f"{name}: corpus embedded in {time.perf_counter() - start:.0f} s", flush=True)
            CACHE.mkdir(parents=True, exist_ok=True)
            np.save(cached, corpus)
        q = encoders.encode(name, [queries[i] for i in qids], 32)
        scores = q @ corpus.T
        run = {}
        for row, qid in enumerate(qids):
            top = np.argsort(-scores[row])[:100]
            run[qid] = docs_by_max_score([(doc_ids[i], float(scores[row, i])) for i in top])
        metrics = evaluate(qrels, run)
        out[name] = {k: round(v, 4) for k, v in metrics.items()}
        out[name]["min_query_cosine_to_torch"] = None
        print(name, out[name], flush=True)
    reference = encoders.encode("torch", [queries[i] for i in qids], 32)
    for name in encoders.names():
        cos = (encoders.encode(name, [queries[i] for i in qids], 32) * reference).sum(axis=1)
        out[name]["min_query_cosine_to_torch"] = round(float(cos.min()), 5)
    return out


def speed(encoders: Encoders, questions: list[str], seconds: float) -> dict:
    out = {}
    for name in encoders.names():
        out[name] = {}
        for batch in (1, 8, 32):
            encoders.encode(name, questions[:batch], batch)  # warm
            done, start, i = 0, time.perf_counter(), 0
            while time.perf_counter() - start < seconds:
                part = questions[i : i + batch] if i + batch <= len(questions) else questions[:batch]
                i = (i + batch) % len(questions)
                encoders.encode(name, part, batch)
                done += len(part)
            out[name][f"batch_{batch}_per_s"] = round(done / (time.perf_counter() - start), 1)
        print(name, out[name], flush=True)
    return out


def main() -> None:
    parser = harness.cli(__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="per backend and batch size")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--docs", type=int, default=None, help="quality on the first N abstracts only (a busy machine)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default=str(RESULTS / "embed_backends.json"))
    args = parser.parse_args()
    questions = [q["question"] for q in json.load(open(HOTPOT))][:100]
    result: dict = {
        "date": harness.utc_now(),
        "threads": args.threads,
        "load_average_before": os.getloadavg()[0],
        "command": harness.command(),
    }
    for spinning in () if args.skip_speed else (False, True):
        encoders = Encoders(args.threads, spinning)
        result[f"speed_onnx_spinning_{str(spinning).lower()}"] = speed(encoders, questions, args.seconds)
    if not args.skip_quality:
        result["scifact_dense"] = quality(Encoders(args.threads, False), DEFAULT_DATASET, args.split, args.docs)
    result["load_average_after"] = os.getloadavg()[0]
    harness.write_json(Path(args.out), result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
