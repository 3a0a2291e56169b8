"""How the knowledge graph reads (issue 23): entity precision and relation correctness on hand-labelled samples,
dev questions' gold titles found as entities, and the share of relations that are typed.

    python -m benchmarks.quality.kg_quality sample    # write the samples to label (fixed seed), keeping labels already given
    python -m benchmarks.quality.kg_quality score     # figures from the labelled samples -> results/kg-quality.json
    python -m benchmarks.quality.kg_quality sample --relations-only --seed 6 --relations-file relations-v6.jsonl
                                                      # a fresh relation sample of the current extractor (new seed)
    python -m benchmarks.quality.kg_quality sample --relations-only --passages test --n-relations 50 --seed 7 \
        --relations-file relations-v7-test.jsonl      # relations of the test questions' own passages (held out)

Samples come from HotpotQA-100 dev passages only (the context passages of questions 0-49), extracted by the
default extractor (spaCy) as graph_eval.py ingests them (offline_corpus.py). The labelling rule is LABELS.md beside the samples.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import harness  # noqa: E402
from benchmarks.harness import RESULTS  # noqa: E402
from benchmarks.quality.offline_corpus import DATASET, extract_all, passage_text  # noqa: E402
from deployments.config import ChunkingConfig  # noqa: E402
from deployments.graph.extraction.ontology import UNTYPED  # noqa: E402
from deployments.ingress.chunking import chunk_document  # noqa: E402
from deployments.models import Document  # noqa: E402
from deployments.text import normalize_name  # noqa: E402

LABELS = RESULTS / "kg-labels"
SEED = 23
N_ENTITIES, N_RELATIONS = 200, 100


def corpus(extractor: str):
    passages = json.loads((DATASET / "hotpotqa_train_corpus.json").read_text())
    questions = json.loads((DATASET / "hotpotqa_train.json").read_text())
    docs = [Document(id=t, text=passage_text(t, s, "blank-line"), metadata={}) for t, s in passages.items()]
    chunks = [c for d in docs for c in chunk_document(d, ChunkingConfig())]
    return questions, chunks, extract_all(chunks, extractor)


def dev_titles(questions: list[dict]) -> set[str]:
    return {title for q in questions[:50] for title, _ in q["context"]}


def sentence_of(text: str, name: str) -> str:
    at = text.find(name)
    if at < 0:
        return text[:300]
    start = max(text.rfind(". ", 0, at) + 2, 0)
    end = text.find(". ", at + len(name))
    return text[start : end + 1 if end > 0 else len(text)][:400]


def _keep_labels(path: Path, rows: list[dict], ident) -> list[dict]:
    if path.exists():  # a row drawn again keeps its label, reason and type judgement
        old = {ident(r): r for r in map(json.loads, path.read_text().splitlines())}
        for r in rows:
            r.update(
                {k: v for k, v in old.get(ident(r), {}).items() if k in ("label", "why", "type_ok", "type_should_be")}
            )
    return rows


def sample(
    extractor: str,
    seed: int = SEED,
    relations_file: str = "relations.jsonl",
    relations_only: bool = False,
    passages: str = "dev",
    n_relations: int = N_RELATIONS,
) -> None:
    """`passages` "test": relations from the test questions' passages that no dev question has (a held-out check
    of rules written from dev samples); entities are always drawn from dev."""
    questions, chunks, extractions = corpus(extractor)
    dev = dev_titles(questions)
    pool = dev if passages == "dev" else {t for q in questions[50:100] for t, _ in q["context"]} - dev
    rng = random.Random(seed)
    mentions = sorted(
        {
            (c.doc_id, c.chunk_id, e.name, e.type)
            for c, ex in zip(chunks, extractions)
            if c.doc_id in dev
            for e in ex.entities
        }
    )
    text = {c.chunk_id: c.text for c in chunks}
    picked = rng.sample(mentions, N_ENTITIES)  # drawn first either way: the relation draw depends on it
    LABELS.mkdir(parents=True, exist_ok=True)
    if not relations_only:
        rows = [
            {"doc": d, "chunk": ch, "name": n, "type": t, "context": sentence_of(text[ch], n), "label": None}
            for d, ch, n, t in picked
        ]
        path = LABELS / "entities.jsonl"
        rows = _keep_labels(path, rows, lambda r: (r["chunk"], r["name"]))
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    names = {(c.chunk_id, e.key): e.name for c, ex in zip(chunks, extractions) for e in ex.entities}
    rels = sorted({(c.doc_id, c.chunk_id, r.source, r.type, r.target) for c, ex in zip(chunks, extractions) if c.doc_id in pool
                   for r in ex.relations if r.type not in UNTYPED})  # fmt: skip
    picked = rng.sample(rels, min(n_relations, len(rels)))
    rows = [
        {"doc": d, "chunk": ch, "source": names.get((ch, s), s), "type": t, "target": names.get((ch, o), o),
         "context": text[ch][:1200], "label": None}
        for d, ch, s, t, o in picked
    ]  # fmt: skip
    path = LABELS / relations_file
    rows = _keep_labels(path, rows, lambda r: (r["chunk"], r["source"], r["type"], r["target"]))
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {0 if relations_only else N_ENTITIES} entities and {len(rows)} relations under {LABELS}")


def title_keys(title: str) -> set[str]:
    """A gold title as an entity key: as written, and without its disambiguator ("Lilu (mythology)" -> "lilu")."""
    bare = title.split(" (")[0]
    return {normalize_name(title), normalize_name(bare)}


def _right(row: dict) -> bool:
    return row["label"] in (1, True, "ok")


def _emitted(chunks, extractions) -> set[tuple[str, str, str, str]]:
    """(chunk, source, type, target) of every typed relation, by display name and by key (a row matches either)."""
    out = set()
    for c, ex in zip(chunks, extractions):
        names = {e.key: e.name for e in ex.entities}
        for r in ex.relations:
            out.add((c.chunk_id, names.get(r.source, r.source), r.type, names.get(r.target, r.target)))
            out.add((c.chunk_id, r.source, r.type, r.target))
    return out


def score(extractor: str) -> dict:
    questions, chunks, extractions = corpus(extractor)
    keys_of: dict[str, set[str]] = {}
    for c, ex in zip(chunks, extractions):
        keys_of.setdefault(c.doc_id, set()).update(k for e in ex.entities for k in (e.key, *e.aliases))
    out: dict = {"extractor": extractor}
    for split, qs in (("dev", questions[:50]), ("test", questions[50:100])):
        golds = [t for q in qs for t in {t for t, _ in q["supporting_facts"]}]
        found = sum(bool(title_keys(t) & keys_of.get(t, set())) for t in golds)
        out[f"gold_titles_found_{split}"] = round(found / len(golds), 3)
    types = Counter(r.type in UNTYPED for ex in extractions for r in ex.relations)
    out["relations"] = sum(types.values())
    out["relations_typed_share"] = round(types[False] / max(sum(types.values()), 1), 3)
    out["entities_per_chunk"] = round(sum(len(ex.entities) for ex in extractions) / len(extractions), 2)
    out["relations_per_chunk"] = round(sum(len(ex.relations) for ex in extractions) / len(extractions), 2)
    dev = dev_titles(questions)
    dev_ex = [ex for c, ex in zip(chunks, extractions) if c.doc_id in dev]
    out["dev_chunks"] = len(dev_ex)
    out["dev_typed_relations"] = sum(r.type not in UNTYPED for ex in dev_ex for r in ex.relations)
    out["dev_typed_relations_per_chunk"] = round(out["dev_typed_relations"] / max(len(dev_ex), 1), 3)
    out["entity_types"] = dict(Counter(e.type for ex in extractions for e in ex.entities).most_common())
    emitted = _emitted(chunks, extractions)
    for path in [LABELS / "entities.jsonl", *sorted(LABELS.glob("relations*.jsonl"))]:
        if not path.exists():
            continue
        name = path.stem.replace("-", "_")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        labelled = [r for r in rows if r.get("label") is not None]
        if labelled:
            out[f"{name}_labelled"] = len(labelled)
            out[f"{name}_precision"] = round(sum(map(_right, labelled)) / len(labelled), 3)
            if name == "entities":
                typed = [r for r in labelled if r.get("type_ok") is not None]
                if typed:
                    out["entity_type_accuracy"] = round(sum(bool(r["type_ok"]) for r in typed) / len(typed), 3)
            else:  # which labelled rows the extractor (as it is now) still states, and how many of those are right
                kept = [r for r in labelled if (r["chunk"], r["source"], r["type"], r["target"]) in emitted
                        or (r["chunk"], normalize_name(r["source"]), r["type"], normalize_name(r["target"])) in emitted]  # fmt: skip
                out[f"{name}_still_emitted"] = len(kept)
                out[f"{name}_still_emitted_right"] = sum(map(_right, kept))
                out[f"{name}_precision_of_still_emitted"] = round(sum(map(_right, kept)) / max(len(kept), 1), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["sample", "score"])
    ap.add_argument("--extractor", choices=["offline", "spacy"], default="spacy")
    ap.add_argument("--seed", type=int, default=SEED, help="sample: the draw's seed")
    ap.add_argument("--relations-file", default="relations.jsonl", help="sample: where the relations go (kg-labels/)")
    ap.add_argument("--relations-only", action="store_true", help="sample: leave entities.jsonl as it is")
    ap.add_argument(
        "--passages", choices=["dev", "test"], default="dev", help="sample: whose passages the relations are from"
    )
    ap.add_argument("--n-relations", type=int, default=N_RELATIONS)
    ap.add_argument("--out", help="score: the result file (default results/kg-quality-EXTRACTOR.json)")
    args = ap.parse_args()
    if args.what == "sample":
        return sample(
            args.extractor, args.seed, args.relations_file, args.relations_only, args.passages, args.n_relations
        )
    out = score(args.extractor)
    out["command"] = harness.command()
    out["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = Path(args.out) if args.out else RESULTS / f"kg-quality-{args.extractor}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
