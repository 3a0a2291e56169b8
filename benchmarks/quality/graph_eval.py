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
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from benchmarks import harness  # noqa: E402
from benchmarks.harness import RESULTS  # noqa: E402
from benchmarks.quality.offline_corpus import SPLITS, Corpus, top  # noqa: E402
from deployments.config import GraphIndexConfig, RerankerConfig  # noqa: E402
from deployments.graph.extraction.offline import named_query_keys  # noqa: E402
from deployments.graph.index.collection import PPRParams  # noqa: E402
from deployments.reranker.backends import lift  # noqa: E402

KS = (2, 5)


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
            # An entity-centric question (it links an entity of these types) gets the stronger lift, as the server's
            types = cfg.get("entity_types") or []
            if any(c.index.entity_info(k)[1] in types for k in res.linked):
                cfg = {**cfg, "graph_weight": cfg["entity_graph_weight"], "graph_keep": cfg["entity_graph_keep"]}
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


def entity_centric(c: Corpus, qids: range | list[int], cfg: dict) -> dict:
    """The questions the gate lifts (they link an entity of `entity_types`) and the types the questions link."""
    types = set(cfg.get("entity_types") or [])
    lifted, seen = 0, Counter()
    for qi in qids:
        res = c.index.search(
            c.questions[qi]["question"], cfg.get("candidates", 30), c.seeds(qi, c.vectors @ c.qvectors[qi])
        )
        linked = {c.index.entity_info(k)[1] for k in res.linked}
        lifted += bool(linked & types)
        seen.update(linked)
    return {"share": round(lifted / len(qids), 4), "questions_linking_type": dict(seen.most_common())}


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
    lift = RerankerConfig()  # the entity-centric questions' lift: the server's by default
    ap.add_argument("--entity-types", default=",".join(lift.entity_types), help="comma-separated; '' turns it off")
    ap.add_argument("--entity-graph-weight", type=float, default=lift.entity_graph_weight)
    ap.add_argument("--entity-graph-keep", type=int, default=lift.entity_graph_keep)
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
        **entity_lift(args),
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
    results["entity_centric"] = entity_centric(c, qids, chosen)
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


def entity_lift(args: argparse.Namespace) -> dict:
    return {
        "entity_types": [t for t in args.entity_types.split(",") if t],
        "entity_graph_weight": args.entity_graph_weight,
        "entity_graph_keep": args.entity_graph_keep,
    }


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
        **entity_lift(args),
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
        "entity_centric": entity_centric(c, qids, cfg),
    }
    path = args.out or RESULTS / f"graph-eval-scifact-{args.split}.json"
    harness.write_json(path, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
