"""`graph_search_cpu_ms_p50`: CPU per search of the index a Graph replica holds (its snapshot, as a new replica
loads it), one thread, seeds given (the exact dense top `passage_seeds` of the collection's vectors for each of the
first 200 load questions, computed outside the clock).

Every size's index is loaded first, then the sizes are measured block-interleaved in one process: each round runs a
block of BLOCK searches on each size in turn (the next questions of that size's cycle), the first WARMUP of a block
are discarded (they pay for the caches the other sizes' blocks left cold), and the rounds go on until each size has
ROUNDS x (BLOCK - WARMUP) timed searches. So each size's p50 comes from the same minutes: a slower machine (the
VM's neighbours on the shared L3 and cores) moves all sizes alike instead of whichever size ran then, and the ratio
of the largest size's p50 to the smallest's (`graph_search_cpu_ratio`) is of one run. Searches are never
alternated one by one: that would leave each search of a small index with caches a big one had just filled.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from benchmarks.scale import data

BLOCK = 25
WARMUP = 5
ROUNDS = 80  # x 20 timed = 1,600 searches per size: each of the 200 questions 8 times
QUESTIONS = 200
SLICE = 100_000

Runs = list[tuple[str, list[tuple[str, float]]]]  # (question, its seed passages (chunk id, cosine))


def load(n: int, data_dir: Path, asked: list[str], qvecs: np.ndarray):
    """The size's index from its snapshot and each question's seeds (None if the collection has no snapshot)."""
    from deployments.config import GraphIndexConfig
    from deployments.graph.index import snapshot

    path = data_dir / "graph-index" / f"{data.COLLECTION}.npz"
    if not path.is_file():
        return None
    params = GraphIndexConfig().params()
    index = snapshot.load(path, params)
    ids, vectors = data.read_vectors(n)
    k = params.passage_seeds
    rows, cosines = [], []
    for lo in range(0, n, SLICE):  # all questions at once per slice of rows (not a pass over the rows per question)
        cos = vectors[lo : lo + SLICE] @ qvecs.T
        top = np.argpartition(-cos, min(k, len(cos)) - 1, axis=0)[:k]
        rows.append(top + lo)
        cosines.append(np.take_along_axis(cos, top, 0))
    row, cosine = np.concatenate(rows), np.concatenate(cosines)  # each slice's best k, per question (column)
    runs: Runs = []
    for j, question in enumerate(asked):
        best = np.argsort(-cosine[:, j], kind="stable")[:k]
        runs.append((question, [(ids[i], float(c)) for i, c in zip(row[best, j], cosine[best, j])]))
    return index, runs


def question_vectors(asked: list[str], data_dir: Path) -> np.ndarray:
    """The questions embedded by the app's embedding backend (as the vector stage embeds a query)."""
    from deployments.config import AppConfig
    from deployments.embedder.backends import make_embedder

    config = AppConfig.from_args({**data.APP_ARGS, "data_dir": str(data_dir)})

    async def embed() -> np.ndarray:
        backend = make_embedder(config.embedder)
        try:
            return np.asarray(await backend.embed(asked), dtype=np.float32)
        finally:
            await backend.aclose()

    return asyncio.run(embed())


def interleaved(loaded: dict[int, tuple], rounds: int = ROUNDS, block: int = BLOCK, warmup: int = WARMUP) -> dict:
    """Sorted CPU ms per timed search of each size, measured in blocks taken in turn (see the module's doc)."""
    times: dict[int, list[float]] = {n: [] for n in loaded}
    at = dict.fromkeys(loaded, 0)
    for _ in range(rounds):
        for n, (index, runs) in loaded.items():
            for i in range(block):
                question, seeds = runs[(at[n] + i) % len(runs)]
                started = time.thread_time()
                index.search(question, 100, seeds)
                if i >= warmup:
                    times[n].append(1000 * (time.thread_time() - started))
            at[n] += block
    return {n: sorted(ts) for n, ts in times.items()}


def figures(times: list[float]) -> dict:
    from benchmarks.speed.graph_scale import p50

    return {
        "graph_search_cpu_ms_p50": p50(times),
        "graph_search_cpu_ms_p95": round(times[int(len(times) * 0.95)], 3),
        "graph_search_cpu_searches": len(times),
    }


def sequential(found: tuple) -> list[float]:
    """The former way: one size's searches (each question twice) right after it loaded, the sizes minutes apart."""
    from benchmarks.speed.graph_scale import cpu_ms

    index, runs = found
    return cpu_ms(lambda question, seeds: index.search(question, 100, seeds), runs * 2)


def measure(folders: dict[int, Path], rounds: int = ROUNDS, one_by_one: bool = False) -> tuple[dict[int, dict], dict]:
    """Each size's figures (with its index's stats) and the ratio of the largest size's p50 to the smallest's;
    `one_by_one`: the former way (`sequential`), to compare."""
    from benchmarks.scale.serve_part import questions

    asked = questions()[0][:QUESTIONS]
    qvecs = question_vectors(asked, next(iter(folders.values())))
    loaded, out = {}, {}
    searching_s = 0.0
    for n, folder in folders.items():
        found = load(n, folder, asked, qvecs)
        if found is None:
            out[n] = {"error": f"no snapshot in {folder}"}
        elif one_by_one:
            started = time.perf_counter()
            out[n] = {**figures(sequential(found)), **found[0].stats()}
            searching_s += time.perf_counter() - started
            loaded[n] = None
        else:
            loaded[n] = found
    if not one_by_one:
        started = time.perf_counter()
        for n, times in interleaved(loaded, rounds).items():
            out[n] = {**figures(times), **loaded[n][0].stats()}
        searching_s = time.perf_counter() - started
    ratio: dict = {}
    if len(loaded) > 1:
        small, large = min(loaded), max(loaded)
        ratio = {
            f"{large}/{small}": round(out[large]["graph_search_cpu_ms_p50"] / out[small]["graph_search_cpu_ms_p50"], 2),
            "method": "one size after another, each right after it loaded (each question twice)"
            if one_by_one
            else f"block-interleaved in one process: {rounds} rounds of {BLOCK} searches per size, the first "
            f"{WARMUP} of each block discarded (benchmarks/scale/search_cpu.py)",
            "measured_s": round(searching_s, 1),  # the searches' wall time, loads left out
        }
    return out, ratio
