"""Synonym pairs among the entity names of HotpotQA passages (deployments/graph/index/synonyms.py), per cosine
threshold, and what embedding the names costs. Tune the threshold on dev (questions 0-49's passages), report test.

    python -m benchmarks.quality.synonym_pairs --split dev      # -> benchmarks/results/synonym-pairs-dev.json
    python -m benchmarks.quality.synonym_pairs --split test
    python -m benchmarks.quality.synonym_pairs --split dev --eval   # + R@2/R@5 of the walk with the synonym edges

The names are embedded by the app's own embedding backend (graph.embedder's default, ONNX MiniLM), in batches of
synonyms.BATCH, as the graph stage would at ingest. Label the pairs (`labels` in the JSON: "same" / "different")
by the rule in benchmarks/results/kg-labels/LABELS.md ("one real-world thing written two ways").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict

from benchmarks import harness
from benchmarks.harness import RESULTS
from benchmarks.quality.graph_eval import evaluate
from benchmarks.quality.offline_corpus import DATASET, SPLITS, Corpus, extract_all, passage_text
from deployments.config import ChunkingConfig, EmbedderConfig, GraphIndexConfig
from deployments.embedder.backends import make_embedder
from deployments.graph.index.synonyms import THRESHOLD, NameSynonyms
from deployments.ingress.chunking import chunk_document
from deployments.models import Document

THRESHOLDS = (0.8, 0.85, 0.88, 0.9, 0.92, 0.95)


def names_of_split(split: str | None) -> dict[str, tuple[str, str]]:
    """Entity names (key -> (name, type)) of the split's questions' passages; of every passage with None."""
    corpus = json.loads((DATASET / "hotpotqa_train_corpus.json").read_text())
    questions = json.loads((DATASET / "hotpotqa_train.json").read_text())
    docs = [Document(id=t, text=passage_text(t, s, "blank-line"), metadata={}) for t, s in corpus.items()]
    chunks = [c for d in docs for c in chunk_document(d, ChunkingConfig())]
    extractions = extract_all(chunks, "spacy")  # the whole corpus: the cached extraction graph_eval made
    titles = {t for qi in SPLITS[split] for t, _ in questions[qi]["context"]} if split else set(corpus)
    names: dict[str, tuple[str, str]] = {}
    for chunk, ex in zip(chunks, extractions):
        if chunk.doc_id in titles:
            for e in ex.entities:
                names.setdefault(e.key, (e.name, e.type))
    return names


async def embed_names(names: dict[str, tuple[str, str]]) -> tuple[NameSynonyms, float]:
    backend = make_embedder(EmbedderConfig())
    try:
        await backend.warmup()
        synonyms = NameSynonyms(threshold=min(THRESHOLDS))
        started = time.perf_counter()
        await synonyms.add(names, backend.embed)
        return synonyms, time.perf_counter() - started
    finally:
        await backend.aclose()


def recall_with_synonyms(synonyms: NameSynonyms, split: str) -> dict:
    """The walk (server defaults) with the synonym pairs at each threshold as aliases in the index, and without."""
    cfg = {"params": asdict(GraphIndexConfig().params()), "graph_weight": 2.0, "fusion_graph": 0.2,
           "graph_norm": "mass", "graph_combine": "cap", "graph_keep": 2}  # fmt: skip
    out = {}
    for t in (None, *THRESHOLDS):
        c = Corpus("blank-line", extractor="spacy")
        if t is not None:
            synonyms.threshold = t
            c.index.synonyms = [(a, b) for a, b, _ in synonyms.pairs()]  # read at the first search's build
        out[str(t) if t else "none"] = {
            "hybrid": evaluate(c, SPLITS[split], "hybrid"),
            "ppr": evaluate(c, SPLITS[split], "ppr", cfg),
        }
        print(t, out[str(t) if t else "none"], file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--eval", action="store_true", help="R@k of the walk with the pairs of the whole corpus")
    args = ap.parse_args()
    names = names_of_split(args.split)
    every = names_of_split(None) if args.eval else names
    synonyms, seconds = asyncio.run(embed_names(every))
    pairs = synonyms.pairs(names)
    out = {
        "split": args.split,
        "command": harness.command(),
        "date": harness.utc_now(),
        "names": len(names),
        "threshold_default": THRESHOLD,
        "embedded": len(synonyms),
        "embed_s": round(seconds, 2),
        "names_per_s": round(len(synonyms) / seconds, 1) if seconds else None,
        "pairs_at": {str(t): sum(s >= t for _, _, s in pairs) for t in THRESHOLDS},
        "pairs": [
            {"a": names[a][0], "b": names[b][0], "type": names[a][1], "cosine": round(s, 3)} for a, b, s in pairs
        ],
    }
    path = RESULTS / f"synonym-pairs-{args.split}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    labels = previous.get("labels", {})
    out["labels"] = labels
    if labels:  # precision of the labelled pairs above each threshold
        out["precision_at"] = {}
        for t in THRESHOLDS:
            judged = [labels[f"{p['a']} | {p['b']}"] for p in out["pairs"] if p["cosine"] >= t]
            judged = [j for j in judged if j in ("same", "different")]
            out["precision_at"][str(t)] = round(judged.count("same") / len(judged), 3) if judged else None
    if args.eval:
        out["recall"] = recall_with_synonyms(synonyms, args.split)
    harness.write_json(path, out)
    print(json.dumps({k: v for k, v in out.items() if k not in ("pairs", "labels")}, indent=2), file=sys.stderr)
    for p in out["pairs"]:
        print(f"{p['cosine']:.3f}  {p['type']:8s} {p['a']} | {p['b']}")


if __name__ == "__main__":
    main()
