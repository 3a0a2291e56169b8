"""Offline harness for graph retrieval on HotpotQA-100 (no Ray, no stores): the same chunking, extractor,
MiniLM embedder, BM25 tokenizer, fusion and embedded-scorer blend as the server, computed in one process so
that variants can be compared in seconds.

    python -m benchmarks.quality.graph_eval --split dev            # tune: questions 0-49 only, grid over PPR settings
    python -m benchmarks.quality.graph_eval --split test --params '{"damping": 0.5}' --graph-weight 0.3

Methods (Recall@2/@5 of the supporting passages among the first distinct documents):
  dense, lexical, hybrid   as the server: dense top-N ∥ BM25 top-N, RRF, then 0.7·cosine + 0.3·BM25/best
  ppr                      CollectionIndex.search (deployments/graph/index/) as a third source: its top-N join
                           the RRF candidates (weight `weights.graph`), its score joins the blend (`graph_weight`)
Corpus embeddings are cached under benchmarks/.cache/ (git-ignored). Writes benchmarks/results/graph-eval-<split>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from benchmarks import harness  # noqa: E402
from benchmarks.harness import CACHE, DATASETS, RESULTS  # noqa: E402
from deployments.config import ChunkingConfig, GraphIndexConfig  # noqa: E402
from deployments.graph.extraction.offline import extract, named_query_keys  # noqa: E402
from deployments.graph.index.collection import CollectionIndex, IndexedChunk, PPRParams  # noqa: E402
from deployments.ingress.chunking import chunk_document  # noqa: E402
from deployments.models import Document  # noqa: E402
from deployments.reranker.backends import lift  # noqa: E402
from deployments.vector.lexical import LexicalEncoder  # noqa: E402

DATASET = DATASETS / "hotpotqa-100"
SCIFACT = DATASETS / "scifact"
SPLITS = {"dev": range(0, 50), "test": range(50, 100), "all": range(0, 100)}
KS = (2, 5)


def passage_text(title: str, sentences: list[str], layout: str) -> str:
    body = "".join(sentences).strip()
    if layout == "blank-line":  # as benchmarks/quality/hotpotqa_recall.py ingests it
        return f"{title}\n\n{body}"
    if layout == "no-title":
        return body
    return f"{title}. {body}"  # "inline": the title runs into the text


def embed(texts: list[str], tag: str) -> np.ndarray:
    """MiniLM vectors (unit length) as the embedded embedder computes them, cached by content."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"{tag}-{digest}.npy"
    if path.exists():
        return np.load(path)
    from sentence_transformers import SentenceTransformer

    from deployments.embedder.backends import resolve_model_path

    model = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    vecs = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


class Bm25:
    """Qdrant's BM25 (the server's tokenizer and document weights, IDF over the whole collection)."""

    def __init__(self, texts: list[str]):
        enc = LexicalEncoder()
        self.enc = enc
        docs = [enc.document(t) for t in texts]
        df: Counter[int] = Counter(i for d in docs for i in set(d.indices))
        n = len(texts)
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self.postings: dict[int, list[tuple[int, float]]] = {}
        for row, d in enumerate(docs):
            for i, v in zip(d.indices, d.values):
                self.postings.setdefault(i, []).append((row, v))
        self.n = n
        self._seen: dict[str, np.ndarray] = {}

    def scores(self, query: str) -> np.ndarray:
        if query in self._seen:
            return self._seen[query]
        out = np.zeros(self.n, dtype=np.float32)
        q = self.enc.query(query)
        for i, v in zip(q.indices, q.values):
            for row, w in self.postings.get(i, []):
                out[row] += v * w * self.idf[i]
        self._seen[query] = out
        return out


def top(scores: np.ndarray, n: int) -> list[int]:
    idx = np.argpartition(-scores, min(n, len(scores) - 1))[:n]
    return [int(i) for i in idx[np.argsort(-scores[idx], kind="stable")] if scores[i] > 0 or True]


def scifact_docs() -> tuple[list[Document], list[dict]]:
    """SciFact as benchmarks/quality/scifact.py ingests it (title, blank line, abstract); queries of both splits with qrels."""
    import gzip

    from benchmarks.quality.scifact import load_queries

    docs = []
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt") as f:
        for line in f:
            row = json.loads(line)
            title, text = row.get("title", "").strip(), row["text"].strip()
            docs.append(Document(id=str(row["_id"]), text=f"{title}\n\n{text}" if title else text, metadata={}))
    questions = []
    for split in ("train", "test"):
        queries, qrels = load_queries(SCIFACT, split)
        questions += [{"question": text, "qrels": qrels[qid], "split": split} for qid, text in queries.items()]
    return docs, questions


def extract_all(chunks: list, extractor: str) -> list:
    """Every chunk's extraction by the named extractor; spaCy's are cached by content and extractor source."""
    if extractor == "offline":
        return [extract(c) for c in chunks]
    import pickle

    from deployments.graph.extraction import spacy as spacy_extraction
    from deployments.models import Extraction

    digest = hashlib.sha256(
        f"{spacy_extraction.VERSION}\x00".encode() + "\x00".join(c.text for c in chunks).encode()
    ).hexdigest()[:16]
    path = CACHE / f"extract-spacy-{digest}.pkl"
    if path.exists():
        return [Extraction.model_validate(d) for d in pickle.loads(path.read_bytes())]
    found = spacy_extraction.SpacyExtractor().extract_many(chunks)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps([e.model_dump() for e in found]))
    return found


def indexed(chunk, ex) -> IndexedChunk:
    """A chunk as the server's index holds it (live_index.py reads the same from the store)."""
    return IndexedChunk(
        chunk.chunk_id, chunk.doc_id, tuple(e.key for e in ex.entities), tuple(e.key for e in ex.entities if e.lead),
        tuple((r.source, r.type, r.target, r.weight) for r in ex.relations),
        tuple((a, e.key) for e in ex.entities for a in e.aliases),
    )  # fmt: skip


class Corpus:
    def __init__(self, layout: str, dataset: str = "hotpotqa", extractor: str = "offline"):
        self.chunks = []
        if dataset == "scifact":
            docs, self.questions = scifact_docs()
            cfg = ChunkingConfig(max_words=512, overlap_words=64)  # benchmarks/quality/scifact.py APP_ARGS
            layout = "scifact"
        else:
            corpus = json.loads((DATASET / "hotpotqa_train_corpus.json").read_text())
            self.questions = json.loads((DATASET / "hotpotqa_train.json").read_text())
            cfg = ChunkingConfig()
            docs = [Document(id=t, text=passage_text(t, s, layout), metadata={}) for t, s in corpus.items()]
        for doc in docs:
            self.chunks.extend(chunk_document(doc, cfg))
        self.doc_of = [c.doc_id for c in self.chunks]
        started = time.perf_counter()
        self.extractions = extract_all(self.chunks, extractor)
        self.extract_s = time.perf_counter() - started
        self.vectors = embed([c.text for c in self.chunks], f"{dataset}-{layout}")
        self.qvectors = embed([q["question"] for q in self.questions], f"{dataset}-questions")
        self.bm25 = Bm25([c.text for c in self.chunks])
        self.index = CollectionIndex()
        self.index.describe_entities({e.key: (e.name, e.type) for ex in self.extractions for e in ex.entities})
        self.index.upsert([indexed(c, ex) for c, ex in zip(self.chunks, self.extractions)])
        self.pos = {c.chunk_id: i for i, c in enumerate(self.chunks)}

    def seeds(self, qi: int, cos: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The seed passages the server's vector stage finds for the question: its exact dense top `passage_seeds`."""
        cos = self.vectors @ self.qvectors[qi] if cos is None else cos
        return [(self.chunks[i].chunk_id, float(cos[i])) for i in top(cos, self.index.params.passage_seeds)]


def rrf(lists: dict[str, list[int]], weights: dict[str, float], k: int = 60) -> list[int]:
    fused: dict[int, float] = {}
    for name, ids in lists.items():
        for rank, i in enumerate(ids, start=1):
            fused[i] = fused.get(i, 0.0) + weights.get(name, 1.0) / (k + rank)
    return sorted(fused, key=lambda i: -fused[i])


def found(scores: dict[int, float], ids: list[int]) -> np.ndarray:
    best = max(scores.values(), default=0.0)
    if best <= 0:
        return np.zeros(len(ids))
    return np.array([max(scores.get(i, 0.0), 0.0) / best for i in ids])


def ranking(c: Corpus, qi: int, method: str, cfg: dict) -> list[str]:
    q = c.questions[qi]
    cos = c.vectors @ c.qvectors[qi]
    n = cfg.get("candidates", 30)
    if method == "dense":
        order = top(cos, n)
    elif method == "lexical":
        order = top(c.bm25.scores(q["question"]), n)
    else:
        lex = c.bm25.scores(q["question"])
        lists = {"vector": top(cos, n), "lexical": [i for i in top(lex, n) if lex[i] > 0]}
        graph: dict[int, float] = {}
        if method == "ppr":
            params = PPRParams(**cfg.get("params", {}))
            if c.index.params != params:
                c.index.configure(params)
            res = c.index.search(q["question"], n, c.seeds(qi, cos))
            graph = {c.pos[ch.chunk_id]: s for ch, s in res.chunks}
            lists["graph"] = list(graph)
        cands = rrf(lists, {"vector": 1.0, "lexical": 1.0, "graph": cfg.get("fusion_graph", 0.2)})[:n]
        lex_found = {i: float(lex[i]) for i in lists["lexical"]}
        blend = 0.7 * cos[cands] + 0.3 * found(lex_found, cands)
        gw = cfg.get("graph_weight", 0.0) if method == "ppr" else 0.0
        if gw > 0:
            # "max": the graph score over the best one's (the embedded scorer's `_found_scores`); "mass": the walk's
            # own share of the restart mass, so a walk that spreads thin (generic entities) adds little
            g = (
                found(graph, cands)
                if cfg.get("graph_norm", "max") == "max"
                else np.minimum([graph.get(i, 0.0) for i in cands], 1.0)
            )
            combine = cfg.get("graph_combine", "add")
            if combine == "add":
                blend = (blend + gw * g) / (1 + gw)
            elif combine == "mult":  # the graph lifts a passage in proportion to its own relevance
                blend = blend * (1 + gw * g)
            else:  # "cap": added, but no passage passes the best hybrid one (the hit the walk starts from)
                blend = lift(blend, gw * g, cfg.get("graph_keep", 1))  # as the server's embedded scorer
        order = [cands[i] for i in np.argsort(-blend, kind="stable")]
    out: list[str] = []
    for i in order:
        if c.doc_of[i] not in out:
            out.append(c.doc_of[i])
    return out


def evaluate(c: Corpus, qids: range, method: str, cfg: dict | None = None) -> dict:
    cfg = cfg or {}
    sums = {k: 0.0 for k in KS}
    for qi in qids:
        gold = {t for t, _ in c.questions[qi]["supporting_facts"]}
        ranked = ranking(c, qi, method, cfg)
        for k in KS:
            sums[k] += len(gold & set(ranked[:k])) / len(gold)
    return {f"recall@{k}": round(sums[k] / len(qids), 4) for k in KS}


def evaluate_scifact(c: Corpus, qids: list[int], method: str, cfg: dict | None = None) -> dict:
    """nDCG@10 / Recall@100 / MRR@10 of SciFact queries (documents by their best chunk), 100 candidates as the app."""
    from benchmarks.metrics import evaluate as beir

    cfg = {"candidates": 100, **(cfg or {})}
    qrels = {str(qi): c.questions[qi]["qrels"] for qi in qids}
    run = {str(qi): ranking(c, qi, method, cfg) for qi in qids}
    return {k: round(v, 4) for k, v in beir(qrels, run).items()}


def coverage(c: Corpus, qids: range) -> dict:
    """Linking coverage: questions with >= 1 linked entity; gold passages mentioning a linked or reached entity."""
    with_link = with_name = gold_total = gold_linked = gold_named = gold_reached = 0
    keys_of = {c.chunks[i].doc_id: set() for i in range(len(c.chunks))}
    for ch, ex in zip(c.chunks, c.extractions):
        keys_of[ch.doc_id].update(e.key for e in ex.entities)
    for qi in qids:
        q = c.questions[qi]
        res = c.index.search(q["question"], 30, c.seeds(qi))  # with the settings evaluated last
        linked = set(res.linked)
        named = linked & named_query_keys(q["question"])  # what seeds the walk beside the passages
        with_link += bool(linked)
        with_name += bool(named)
        for title in {t for t, _ in q["supporting_facts"]}:
            gold_total += 1
            gold_linked += bool(keys_of.get(title, set()) & linked)
            gold_named += bool(keys_of.get(title, set()) & named)
            gold_reached += bool(keys_of.get(title, set()) & (linked | set(res.reached)))
    return {
        "questions_with_linked_entity": round(with_link / len(qids), 3),
        "questions_with_linked_name": round(with_name / len(qids), 3),
        "gold_passages_mentioning_linked": round(gold_linked / gold_total, 3),
        "gold_passages_mentioning_linked_name": round(gold_named / gold_total, 3),
        "gold_passages_mentioning_linked_or_reached": round(gold_reached / gold_total, 3),
    }


def misses(c: Corpus, qids: range, cfg: dict) -> list[dict]:
    """Per question that `ppr` leaves a gold passage out of its top 5: why the walk did not bring it (failure study).

    The seed is the dense top-1 chunk (the walk's restart with passage_seeds 1); `shared` the keys the seed
    mentions that the missed passage mentions too, `lead` those of them the missed passage is about."""
    params = PPRParams(**cfg.get("params", {}))
    if c.index.params != params:
        c.index.configure(params)
    out = []
    for qi in qids:
        q = c.questions[qi]
        gold = {t for t, _ in q["supporting_facts"]}
        ranked = ranking(c, qi, "ppr", cfg)[:5]
        if gold <= set(ranked):
            continue
        seed = int(np.argmax(c.vectors @ c.qvectors[qi]))
        seed_keys = {e.key for e in c.extractions[seed].entities}
        linked = c.index.link(q["question"])
        row = {
            "q": qi,
            "question": q["question"],
            "seed": c.doc_of[seed],
            "seed_is_gold": c.doc_of[seed] in gold,
            "linked": linked,
            "top5": ranked,
            "missed": [],
        }
        for title in sorted(gold - set(ranked)):
            idx = [i for i, d in enumerate(c.doc_of) if d == title]
            keys = {e.key for i in idx for e in c.extractions[i].entities}
            lead = {e.key for i in idx for e in c.extractions[i].entities if e.lead}
            row["missed"].append(
                {
                    "title": title,
                    "first_sentence": c.chunks[idx[0]].text[:160] if idx else None,
                    "lead": sorted(lead),
                    "shared": sorted(seed_keys & keys),
                    "shared_lead": sorted(seed_keys & lead),
                    "linked_here": sorted(set(linked) & keys),
                }
            )
        out.append(row)
    return out


GRID = {
    "lead_weight": [0.0, 3.0, 10.0],
    "idf_power": [0.0, 1.0],
    "entity_seed_weight": [0.0, 0.3],
    "passage_seeds": [1, 3, 5],
    "graph_weight": [0.3, 0.6, 1.0],
    "fusion_graph": [0.2, 1.0],
}
PARAM_KEYS = ("lead_weight", "idf_power", "entity_seed_weight", "passage_seeds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--split", choices=[*SPLITS, "train"], default="dev", help="HotpotQA dev/test/all; SciFact train/test"
    )
    ap.add_argument("--dataset", choices=["hotpotqa", "scifact"], default="hotpotqa")
    ap.add_argument("--layout", choices=["blank-line", "inline", "no-title"], default="blank-line")
    ap.add_argument("--extractor", choices=["offline", "spacy"], default="offline", help="graph.extraction.offline")
    ap.add_argument("--grid", action="store_true", help="search GRID (use on dev only)")
    ap.add_argument("--params", default="{}", help="PPRParams fields as JSON, over the server's (graph.index) defaults")
    # Defaults: the server's (reranker.graph_weight, graph_keep; retrieval.weights.graph); the walk's from --params.
    ap.add_argument("--graph-weight", type=float, default=2.0)
    ap.add_argument("--fusion-graph", type=float, default=0.2)
    ap.add_argument(
        "--graph-norm",
        choices=["mass", "max"],
        default="mass",
        help="mass: the walk's share (the server); max: over the best",
    )
    ap.add_argument(
        "--graph-combine",
        choices=["cap", "add", "mult"],
        default="cap",
        help="cap: the server's lift, never past --graph-keep",
    )
    ap.add_argument("--graph-keep", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--misses", type=Path, help="also write the failure study (questions whose gold passage ppr misses at 5)"
    )
    args = ap.parse_args()
    if args.grid and args.split != "dev":
        sys.exit("tune on dev only")
    t0 = time.perf_counter()
    if args.dataset == "scifact":
        return main_scifact(args)
    c = Corpus(args.layout, extractor=args.extractor)
    qids = SPLITS[args.split]
    print(
        f"corpus {len(c.chunks)} chunks, extraction {c.extract_s:.1f}s, ready in {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    results: dict = {m: evaluate(c, qids, m) for m in ("dense", "lexical", "hybrid")}
    base_params = {**asdict(GraphIndexConfig().params()), **json.loads(args.params)}  # the server's walk by default
    chosen = {
        "params": base_params,
        "graph_weight": args.graph_weight,
        "fusion_graph": args.fusion_graph,
        "graph_norm": args.graph_norm,
        "graph_combine": args.graph_combine,
        "graph_keep": args.graph_keep,
    }
    if args.grid:
        trials = []
        keys = list(GRID)
        for values in itertools.product(*(GRID[k] for k in keys)):
            v = dict(zip(keys, values))
            cfg = {
                "params": {**base_params, **{k: v[k] for k in PARAM_KEYS}},
                "graph_weight": v["graph_weight"],
                "fusion_graph": v["fusion_graph"],
                "graph_norm": args.graph_norm,
                "graph_combine": args.graph_combine,
                "graph_keep": args.graph_keep,
            }
            r = evaluate(c, qids, "ppr", cfg)
            trials.append({**cfg, **r})
        trials.sort(key=lambda t: (-t["recall@5"], -t["recall@2"]))  # the target is R@5
        results["grid_top10"] = trials[:10]
        results["grid_trials"] = len(trials)
        best = trials[0]
        chosen = {
            k: best[k] for k in ("params", "graph_weight", "fusion_graph", "graph_norm", "graph_combine", "graph_keep")
        }
    results["ppr"] = evaluate(c, qids, "ppr", chosen)
    results["ppr_settings"] = {**chosen, "params": asdict(replace(PPRParams(), **chosen["params"]))}
    results["linking"] = coverage(c, qids)
    if args.misses:
        args.misses.write_text(json.dumps(misses(c, qids, chosen), indent=1) + "\n")
    out = {
        "split": args.split,
        "questions": f"{qids.start}-{qids.stop - 1}",
        "layout": args.layout,
        "extractor": args.extractor,
        "command": harness.command(),
        "date": harness.utc_now(),
        **results,
    }
    path = args.out or RESULTS / f"graph-eval-{args.layout}-{args.split}.json"
    harness.write_json(path, out)
    print(json.dumps({k: v for k, v in out.items() if k != "grid_top10"}, indent=2))
    if args.grid:
        for t in results["grid_top10"]:
            print(t)


def main_scifact(args: argparse.Namespace) -> None:
    """hybrid vs the walk on SciFact (train for tuning, test to report), offline: a quick check that a setting
    chosen on HotpotQA does not cost single-hop ranking (benchmarks/quality/scifact.py measures it through the app)."""
    if args.split not in ("train", "test") or args.grid:
        sys.exit("SciFact: --split train or test, no --grid")
    c = Corpus("scifact", dataset="scifact", extractor=args.extractor)
    qids = [i for i, q in enumerate(c.questions) if q["split"] == args.split]
    cfg = {
        "params": {**asdict(GraphIndexConfig().params()), **json.loads(args.params)},
        "graph_weight": args.graph_weight,
        "fusion_graph": args.fusion_graph,
        "graph_norm": args.graph_norm,
        "graph_combine": args.graph_combine,
        "graph_keep": args.graph_keep,
    }
    out = {
        "dataset": "scifact",
        "split": args.split,
        "queries": len(qids),
        "command": harness.command(),
        "date": harness.utc_now(),
        "hybrid": evaluate_scifact(c, qids, "hybrid"),
        "ppr": evaluate_scifact(c, qids, "ppr", cfg),
        "ppr_settings": {**cfg, "params": asdict(replace(PPRParams(), **cfg["params"]))},
    }
    path = args.out or RESULTS / f"graph-eval-scifact-{args.split}.json"
    harness.write_json(path, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
