"""Texts of concurrent calls in one model call: a small asyncio batcher (what @serve.batch did, without Ray).

One batch runs at a time; the next one fills while it runs. A batch closes when it holds `max_texts` texts or
`wait_s` after its first call arrived. A call is never split here (the caller sends at most `max_texts`), and a
call whose caller was cancelled while it waited is left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Vectors = list[list[float]]
EmbedCalls = Callable[[list[list[str]]], Awaitable[list[Vectors]]]


class MicroBatcher:
    def __init__(self, run: EmbedCalls, max_texts: int, wait_s: float):
        self._run = run
        self.max_texts = max_texts
        self.wait_s = wait_s
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future]] = asyncio.Queue()
        self._worker: asyncio.Task | None = None

    async def __call__(self, texts: list[str]) -> Vectors:
        if len(texts) > self.max_texts:
            raise ValueError(f"a call of {len(texts)} texts exceeds the batch size {self.max_texts}")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((texts, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._serve())
        return await future

    async def _serve(self) -> None:
        carry: tuple[list[str], asyncio.Future] | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            batch, size = [first], len(first[0])
            deadline = asyncio.get_running_loop().time() + self.wait_s
            while size < self.max_texts:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if size + len(item[0]) > self.max_texts:
                    carry = item  # opens the next batch
                    break
                batch.append(item)
                size += len(item[0])
            await self._run_batch([(texts, f) for texts, f in batch if not f.done()])

    async def _run_batch(self, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        if not batch:
            return
        try:
            results = await self._run([texts for texts, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the batch function returned {len(results)} results for {len(batch)} calls")
        except Exception as exc:  # every caller of the batch gets the error; the batcher goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), vectors in zip(batch, results):
            if not future.done():
                future.set_result(vectors)

    async def aclose(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass
