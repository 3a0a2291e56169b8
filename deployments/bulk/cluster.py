"""The bulk path over a Ray cluster: one ChunkWorker actor per node (`num_cpus` each, pinned to its node), fed
batches of rows; the documents they return are handed to `write` on the caller's process as they arrive, so the
store node writes while the workers compute. The stores keep their single owner: only the work before the
write is spread.

    ray.init(address="auto")
    workers = start_workers({"data_dir": "data"}, alive_nodes())   # one per node, models loaded
    report = spread(rows, write, workers)      # write(docs): POST /v1/ingest (graphrag-ingest --ray)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from deployments.bulk.worker import ChunkWorker
from deployments.config import AppConfig
from deployments.models import MAX_DOCUMENTS_PER_INGEST


@dataclass
class BulkReport:
    rows: int = 0
    documents: int = 0  # one-chunk documents written (= chunks)
    seconds: float = 0.0
    write_seconds: float = 0.0  # inside `write`, on the caller's process

    @property
    def chunks_per_s(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0


class _NodeWorker:
    """The Ray actor around a ChunkWorker (module level, so Ray can import it on every node)."""

    def __init__(self, args: dict[str, Any]):
        self.worker = ChunkWorker(AppConfig.from_args(args))

    def run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.worker(rows)

    def ready(self) -> bool:
        """Loads the model and the parser (the first call's cost) before any batch is timed."""
        self.worker([{"id": "warm-up", "text": "Warm up the model and the parser."}])
        return True


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def alive_nodes() -> list[str]:
    import ray

    return sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0)


def start_workers(args: dict[str, Any], nodes: list[str], num_cpus: float = 1) -> list[Any]:
    """One worker per node, each pinned there (hard node affinity), models loaded before this returns."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = ray.remote(_NodeWorker)
    workers = [
        actor.options(
            num_cpus=num_cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        ).remote(args)
        for node in nodes
    ]
    ray.get([w.ready.remote() for w in workers])
    return workers


def spread(
    rows: Iterable[dict[str, Any]],
    write: Callable[[list[dict[str, Any]]], Any] | None,
    workers: list[Any],
    batch_rows: int = 32,
    in_flight: int = 2,
    write_documents: int = 128,
) -> BulkReport:
    """Rows in batches of `batch_rows` to the workers (`in_flight` batches queued per worker, so none waits while
    the caller writes); their documents to `write` in groups of at least `write_documents` (fewer, larger store
    transactions; at most the API's MAX_DOCUMENTS_PER_INGEST a request). `write` None: compute only (the benchmark's own part)."""
    import ray

    report = BulkReport()
    started = time.perf_counter()
    batches = _batches(rows, batch_rows)
    pending: dict[Any, Any] = {}

    def submit(worker: Any) -> None:
        batch = next(batches, None)
        if batch is not None:
            report.rows += len(batch)
            pending[worker.run.remote(batch)] = worker

    for worker in workers:
        for _ in range(in_flight):
            submit(worker)
    ready: list[dict[str, Any]] = []

    def flush(limit: int) -> None:
        nonlocal ready
        while len(ready) >= limit and ready:
            group, ready = ready[:MAX_DOCUMENTS_PER_INGEST], ready[MAX_DOCUMENTS_PER_INGEST:]
            t0 = time.perf_counter()
            if write is not None:
                write(group)
            report.write_seconds += time.perf_counter() - t0
            report.documents += len(group)

    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        submit(pending.pop(done[0]))  # the worker's next batch is queued before the caller writes
        ready += ray.get(done[0])
        flush(write_documents)
    flush(1)
    report.seconds = time.perf_counter() - started
    return report
