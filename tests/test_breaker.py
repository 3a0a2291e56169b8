"""The circuit breaker (deployments/breaker.py): plain, on a fake clock; then in front of real servers that go
away and come back (the OpenAI-protocol test double as reranker, chat and embeddings endpoint; a Bolt port
nobody listens on)."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployments.breaker import CircuitBreaker
from deployments.chat.backends import make_chat
from deployments.config import (
    BreakerConfig,
    ChatConfig,
    EmbedderConfig,
    GraphConfig,
    RerankerConfig,
)
from deployments.embedder.backends import OpenAIEmbedder
from deployments.errors import CircuitOpen, StageError, StageUnavailable
from deployments.graph.store.session import BoltSession
from deployments.net import free_port
from deployments.reranker.backends import HttpReranker
from tests.openai_server import OpenAIProtocolServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """Counts the calls that reached it; fails as told."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = True

    async def __call__(self) -> str:
        self.calls += 1
        if self.down:
            raise StageUnavailable("rerank", "connection refused")
        return "ok"


def breaker(clock: Clock, threshold: int = 3, open_s: float = 5.0) -> CircuitBreaker:
    return CircuitBreaker("rerank", "test backend", threshold, open_s, clock=clock)


async def test_opens_after_failures_in_a_row_and_then_fails_fast_without_calling():
    clock, backend = Clock(), Backend()
    b = breaker(clock)
    for _ in range(3):
        with pytest.raises(StageUnavailable, match="connection refused"):
            await b.call(backend)
    assert b.state == "open" and backend.calls == 3
    with pytest.raises(CircuitOpen, match="circuit open after 3 failures.*connection refused"):
        await b.call(backend)
    assert backend.calls == 3 and b.rejected == 1
    assert b.snapshot()["state"] == "open" and b.snapshot()["probe_in_s"] == 5.0


async def test_an_answer_resets_the_count_and_answered_errors_do_not_trip():
    clock, backend = Clock(), Backend()
    b = breaker(clock)

    async def answered_500() -> str:
        raise StageError("rerank", "HTTP 500")

    for _ in range(2):
        with pytest.raises(StageUnavailable):
            await b.call(backend)
    for _ in range(5):
        with pytest.raises(StageError):
            await b.call(answered_500)
    with pytest.raises(StageUnavailable):
        await b.call(backend)
    assert b.state == "closed" and b.snapshot()["failures_in_a_row"] == 1


async def test_half_open_lets_one_probe_through_and_its_success_closes():
    clock, backend = Clock(), Backend()
    b = breaker(clock)
    for _ in range(3):
        with pytest.raises(StageUnavailable):
            await b.call(backend)
    clock.now += 5.0
    assert b.state == "half_open"
    backend.down = False
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_probe() -> str:
        started.set()
        await release.wait()
        return await backend()

    probe = asyncio.ensure_future(b.call(slow_probe))
    await started.wait()
    with pytest.raises(CircuitOpen):  # a second call while the probe is out fails fast
        await b.call(backend)
    release.set()
    assert await probe == "ok"
    assert b.state == "closed" and await b.call(backend) == "ok"
    assert b.times_opened == 1


async def test_a_failed_probe_opens_again_for_open_s():
    clock, backend = Clock(), Backend()
    b = breaker(clock)
    for _ in range(3):
        with pytest.raises(StageUnavailable):
            await b.call(backend)
    clock.now += 5.0
    with pytest.raises(StageUnavailable, match="connection refused"):
        await b.call(backend)  # the probe
    assert b.state == "open" and backend.calls == 4
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        await b.call(backend)
    clock.now += 0.1
    backend.down = False
    assert await b.call(backend) == "ok" and b.state == "closed"


async def test_a_cancelled_probe_frees_the_probe_slot():
    clock, backend = Clock(), Backend()
    b = breaker(clock, threshold=1)
    with pytest.raises(StageUnavailable):
        await b.call(backend)
    clock.now += 5.0

    async def hangs() -> str:
        await asyncio.sleep(60)
        return "never"

    probe = asyncio.ensure_future(b.call(hangs))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    backend.down = False
    assert await b.call(backend) == "ok"  # the next call is the probe


async def test_with_a_probe_calls_never_wait_on_it_and_its_success_closes():
    clock, backend = Clock(), Backend()
    release = asyncio.Event()

    async def probe() -> str:
        await release.wait()
        return await backend()

    b = CircuitBreaker("embed", "x", failure_threshold=2, open_s=5, clock=clock, probe=probe)
    for _ in range(2):
        with pytest.raises(StageUnavailable):
            await b.call(backend)
    clock.now += 5
    backend.down = False
    for _ in range(3):  # half-open: the probe runs in the background, the calls fail fast meanwhile
        with pytest.raises(CircuitOpen):
            await b.call(backend)
    assert backend.calls == 2
    release.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert b.state == "closed" and await b.call(backend) == "ok"


async def test_a_failed_background_probe_opens_again():
    clock, backend = Clock(), Backend()
    b = CircuitBreaker("embed", "x", failure_threshold=1, open_s=5, clock=clock, probe=backend)
    with pytest.raises(StageUnavailable):
        await b.call(backend)
    clock.now += 5
    with pytest.raises(CircuitOpen):
        await b.call(backend)
    await asyncio.sleep(0)
    assert backend.calls == 2 and b.state == "open" and b.snapshot()["probe_in_s"] == 5.0


async def test_disabled_breaker_passes_every_call():
    backend = Backend()
    b = CircuitBreaker("rerank", "x", failure_threshold=1, open_s=5, enabled=False)
    for _ in range(4):
        with pytest.raises(StageUnavailable):
            await b.call(backend)
    assert backend.calls == 4 and b.state == "closed"


# ---- in front of real servers -------------------------------------------------------------------

FAST = BreakerConfig(failure_threshold=2, open_s=0.5)


async def test_reranker_server_stopped_is_skipped_then_resumes_by_itself():
    server = OpenAIProtocolServer().start()
    port = server.port
    rr = HttpReranker(RerankerConfig(url=f"{server.root_url}/rerank", timeout_s=2, breaker=FAST))
    try:
        assert len((await rr.rerank("q", ["a b", "q"])).scores) == 2
        server.stop()
        for _ in range(2):
            with pytest.raises(StageUnavailable, match="unreachable"):
                await rr.rerank("q", ["a"])
        t0 = time.monotonic()
        with pytest.raises(CircuitOpen):
            await rr.rerank("q", ["a"])
        with pytest.raises(CircuitOpen):  # readiness says so too
            await rr.ping()
        assert time.monotonic() - t0 < 0.05
        server = OpenAIProtocolServer(port=port).start()
        await asyncio.sleep(0.5)
        with pytest.raises(CircuitOpen):  # fails fast still, and starts the probe (a one-text rerank)
            await rr.rerank("q", ["a"])
        await asyncio.sleep(0.3)
        assert rr.breaker.state == "closed"  # the probe found the server back
        assert len((await rr.rerank("q", ["a"])).scores) == 1
        assert [r.body["texts"] for r in server.requests("rerank")] == [["ping"], ["a"]]
    finally:
        await rr.aclose()
        server.stop()


async def test_chat_provider_that_stays_down_is_skipped_for_the_next_one():
    with OpenAIProtocolServer(model_suffix="-second") as second:
        dead = f"http://127.0.0.1:{free_port()}/v1"
        chat = make_chat(ChatConfig(
            base_url=dead, model="primary", max_attempts=3, backoff_base_s=0.2, timeout_s=10, breaker=FAST,
            fallbacks=[{"base_url": second.base_url, "model": "second"}],
        ))  # fmt: skip
        try:
            for _ in range(2):  # the primary's retries (3 attempts, backoff) each time, then the second provider
                assert (await chat.answer("q?", ["p"], [])).model == "second-second"
            t0 = time.monotonic()
            result = await chat.answer("q?", ["p"], [])
            assert result.model == "second-second" and time.monotonic() - t0 < 0.15  # no retries on the dead one
            assert chat.providers[0].breaker.state == "open"
        finally:
            await chat.aclose()


async def test_embeddings_endpoint_down_fails_fast_after_the_threshold():
    emb = OpenAIEmbedder(
        EmbedderConfig(openai_base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0, breaker=FAST)
    )
    try:
        for _ in range(2):
            with pytest.raises(StageUnavailable, match="unreachable"):
                await emb.embed(["x"])
        with pytest.raises(CircuitOpen):
            await emb.embed(["x"])
    finally:
        await emb.aclose()


async def test_bolt_server_down_fails_fast_after_the_threshold():
    uri = f"bolt://127.0.0.1:{free_port()}"
    config = GraphConfig(bolt_uri=uri, password="unused", connect_attempts=1, query_timeout_s=2, breaker=FAST)
    session = BoltSession(config, uri)
    try:
        for _ in range(2):
            with pytest.raises(StageUnavailable, match="cannot reach") as info:
                await session.ping()
            assert not isinstance(info.value, CircuitOpen)
        with pytest.raises(CircuitOpen, match="graph stage: .* circuit open"):
            await session.ping()
    finally:
        await session.aclose()
