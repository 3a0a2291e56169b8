"""The real-stage benchmark's in-process monolith batches embeddings as the Embedder deployment does."""
import asyncio

from benchmarks.real_stages import BatchedEmbedder


class CountingBackend:
    def __init__(self):
        self.calls: list[list[str]] = []

    async def embed(self, texts):
        self.calls.append(list(texts))
        await asyncio.sleep(0.01)
        return [[float(len(t)), float(i)] for i, t in enumerate(texts)]


async def test_concurrent_calls_share_model_calls_and_keep_their_own_vectors():
    backend = CountingBackend()
    batcher = BatchedEmbedder(backend, max_batch_size=4, wait_s=0.05)
    calls = [["a" * n] for n in range(1, 11)] + [["x", "yy", "zzz", "wwww", "vvvvv", "uuuuuu"]]  # the last > max: split
    results = await asyncio.gather(*(batcher.embed(texts) for texts in calls))
    for texts, vectors in zip(calls, results):
        assert [v[0] for v in vectors] == [float(len(t)) for t in texts]
    assert all(len(c) <= 4 for c in backend.calls)
    assert sum(len(c) for c in backend.calls) == 16
    assert len(backend.calls) < len(calls)  # batched: fewer model calls than calls
    assert await batcher.embed([]) == []
