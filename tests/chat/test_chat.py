"""Chat stage against the local OpenAI-protocol test double: answers, retry/backoff policy, extractive mode."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from deployments.chat.backends import OpenAIChat, build_messages, make_chat, parse_citations, parse_retry_after
from deployments.chat.extractive import ExtractiveChat
from deployments.config import ChatConfig
from deployments.errors import StageError, StageUnavailable
from tests.openai_server import OpenAIProtocolServer

PASSAGES = [
    "Marie Curie was born in Warsaw in 1867. She studied physics in Paris.",
    "The Eiffel Tower is in Paris. It was completed in 1889.",
]
FACTS = ["Marie Curie —BORN_IN→ Warsaw"]
QUESTION = "Where was Marie Curie born?"


@pytest.fixture(scope="module")
def server():
    with OpenAIProtocolServer(api_key="sk-test") as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.reset()
    yield server
    server.reset()


def chat_for(srv, **overrides) -> OpenAIChat:
    opts = dict(base_url=srv.base_url, api_key="sk-test", backoff_base_s=0.05, backoff_max_s=0.2, timeout_s=10)
    opts.update(overrides)
    return OpenAIChat(ChatConfig(**opts))


async def test_answer_cites_first_passage_and_reports_served_model(srv):
    chat = chat_for(srv, model="gpt-4o-mini")
    try:
        result = await chat.answer(QUESTION, PASSAGES, FACTS)
    finally:
        await chat.aclose()
    assert result.answer == f"{' '.join(PASSAGES[0].split())} [1]"
    assert result.model == "gpt-4o-mini-testdouble"  # what the server said, not what we asked for
    assert parse_citations(result.answer, len(PASSAGES)) == [1]
    (req,) = srv.requests("chat")
    assert req.headers["authorization"] == "Bearer sk-test"
    body = req.body
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.0 and body["max_tokens"] == 512
    user = body["messages"][-1]["content"]
    assert "[1] Marie Curie" in user and "[2] The Eiffel" in user and "- Marie Curie —BORN_IN→ Warsaw" in user
    assert user.endswith(f"Question: {QUESTION}")
    assert "only" in body["messages"][0]["content"]


async def test_429_retry_after_is_honoured(srv):
    srv.fault("chat", status=429, retry_after=1)
    chat = chat_for(srv)
    try:
        result = await chat.answer(QUESTION, PASSAGES, FACTS)
    finally:
        await chat.aclose()
    first, second = srv.requests("chat")
    assert (first.status, second.status) == (429, 200)
    # Our own backoff would be <= 0.05 s: a >= 1 s gap can only come from Retry-After.
    assert second.mono - first.mono >= 1.0
    assert result.answer.endswith("[1]")


async def test_5xx_twice_then_success(srv):
    srv.fault("chat", status=500, times=2)
    chat = chat_for(srv)
    try:
        result = await chat.answer(QUESTION, PASSAGES, FACTS)
    finally:
        await chat.aclose()
    assert [r.status for r in srv.requests("chat")] == [500, 500, 200]
    assert "[1]" in result.answer


async def test_invalid_json_is_retried(srv):
    srv.fault("chat", invalid_json=True)
    chat = chat_for(srv)
    try:
        result = await chat.answer(QUESTION, PASSAGES, FACTS)
    finally:
        await chat.aclose()
    assert len(srv.requests("chat")) == 2 and "[1]" in result.answer


async def test_persistent_503_gives_up_after_max_attempts(srv):
    srv.fault("chat", status=503, times=10)
    chat = chat_for(srv, max_attempts=3, backoff_base_s=0.1, backoff_max_s=0.2, timeout_s=5)
    t0 = time.monotonic()
    with pytest.raises(StageError) as err:
        await chat.answer(QUESTION, PASSAGES, FACTS)
    elapsed = time.monotonic() - t0
    await chat.aclose()
    assert len(srv.requests("chat")) == 3
    assert err.value.stage == "chat" and "HTTP 503" in str(err.value) and "3 attempt" in str(err.value)
    assert not isinstance(err.value, StageUnavailable)
    # Two waits of 0.05..0.1 s and 0.1..0.2 s: backoff happened, and well within the budget.
    assert 0.15 <= elapsed < 2.0
    first, second, third = srv.requests("chat")
    assert second.mono - first.mono >= 0.05 and third.mono - second.mono >= 0.1


async def test_total_budget_bounds_retries(srv):
    srv.fault("chat", status=503, times=20)
    chat = chat_for(srv, max_attempts=10, backoff_base_s=0.3, backoff_max_s=2.0, timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(StageError, match="budget"):
        await chat.answer(QUESTION, PASSAGES, FACTS)
    await chat.aclose()
    assert time.monotonic() - t0 < 1.3  # never slept past the budget (slack for a loaded machine)
    assert 2 <= len(srv.requests("chat")) < 10


async def test_retry_after_beyond_budget_fails_without_waiting(srv):
    srv.fault("chat", status=429, retry_after=30)
    chat = chat_for(srv, timeout_s=2.0)
    t0 = time.monotonic()
    with pytest.raises(StageError, match="Retry-After 30"):
        await chat.answer(QUESTION, PASSAGES, FACTS)
    await chat.aclose()
    assert time.monotonic() - t0 < 1.0  # did not wait for the 30 s
    assert len(srv.requests("chat")) == 1


async def test_slow_server_times_out_within_budget(srv):
    srv.fault("chat", delay=3.0)
    chat = chat_for(srv, timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(StageUnavailable, match="timed out"):
        await chat.answer(QUESTION, PASSAGES, FACTS)
    await chat.aclose()
    assert time.monotonic() - t0 < 1.5  # the server would take 3 s


async def test_400_is_not_retried(srv):
    srv.fault("chat", status=400)
    chat = chat_for(srv)
    with pytest.raises(StageError, match="HTTP 400"):
        await chat.answer(QUESTION, PASSAGES, FACTS)
    await chat.aclose()
    assert len(srv.requests("chat")) == 1


async def test_wrong_key_is_not_retried(srv):
    chat = chat_for(srv, api_key="sk-wrong")
    with pytest.raises(StageError, match="HTTP 401") as err:
        await chat.answer(QUESTION, PASSAGES, FACTS)
    await chat.aclose()
    assert "sk-wrong" not in str(err.value)
    assert len(srv.requests("chat")) == 1


async def test_unreachable_server_is_stage_unavailable():
    from deployments.net import free_port

    chat = OpenAIChat(ChatConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", max_attempts=2, backoff_base_s=0.01))
    with pytest.raises(StageUnavailable, match="connection failed"):
        await chat.answer(QUESTION, PASSAGES, FACTS)
    with pytest.raises(StageUnavailable):
        await chat.ping()
    await chat.aclose()


async def test_ping(srv):
    chat = chat_for(srv)
    assert "openai:http://127.0.0.1" in await chat.ping()
    await chat.aclose()
    bad = chat_for(srv, api_key="sk-wrong")
    with pytest.raises(StageError, match="credentials"):
        await bad.ping()
    await bad.aclose()


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    assert 9.0 <= parse_retry_after({"retry-after": formatdate(now + 10, usegmt=True)}, now=now) <= 10.0
    assert parse_retry_after({"retry-after": formatdate(now - 10, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({}) is None and parse_retry_after({"retry-after": "soon"}) is None


def test_parse_citations():
    assert parse_citations("A [2] b [1][2] c [7] d [0] e [1, 3]", 3) == [2, 1, 3]
    assert parse_citations("no markers", 3) == []


def test_prompt_numbers_passages_from_one():
    user = build_messages("q?", ["alpha  beta\ngamma", "delta"], [])[-1]["content"]
    assert "[1] alpha beta gamma\n[2] delta" in user and "Graph facts:\n(none)" in user


async def test_extractive_cites_passages_with_query_terms():
    chat = ExtractiveChat()
    passages = [
        "The Eiffel Tower is in Paris. It was completed in 1889.",
        "Marie Curie was born in Warsaw in 1867. She later moved to Paris.",
        "Warsaw is the capital of Poland.",
    ]
    result = await chat.answer(
        "Where was Marie Curie born?", passages, ["Marie Curie —BORN_IN→ Warsaw", "Eiffel Tower —IN→ Paris"]
    )
    assert result.model == "extractive"
    cited = parse_citations(result.answer, len(passages))
    assert cited and cited[0] == 2 and 1 not in cited
    assert "Marie Curie was born in Warsaw in 1867 [2]." in result.answer
    assert "Marie Curie —BORN_IN→ Warsaw" in result.answer and "Eiffel Tower —IN→" not in result.answer
    again = await chat.answer("Where was Marie Curie born?", passages, [])
    assert again.answer == (await chat.answer("Where was Marie Curie born?", passages, [])).answer


async def test_extractive_without_overlap_and_without_passages():
    chat = ExtractiveChat()
    none = await chat.answer("quantum chromodynamics", ["Cats sleep a lot. Dogs bark."], [])
    assert none.answer.startswith("No passage states this directly") and parse_citations(none.answer, 1) == [1]
    empty = await chat.answer("anything", [], [])
    assert parse_citations(empty.answer, 0) == [] and "No passages" in empty.answer


def test_make_chat_picks_backend():
    assert isinstance(make_chat(ChatConfig()), ExtractiveChat)
    assert isinstance(make_chat(ChatConfig(base_url="http://127.0.0.1:1/v1")), OpenAIChat)


async def test_test_double_streams_openai_chunks(srv):
    import httpx
    import openai

    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "[1] Alice founded Acme."}]}
    raw = httpx.post(f"{srv.base_url}/chat/completions", json=body, headers={"Authorization": "Bearer sk-test"})
    events = [line for line in raw.text.splitlines() if line]
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)
    client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
    stream = await client.chat.completions.create(model="m", messages=body["messages"], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    await client.close()
    assert text == "Alice founded Acme. [1]"


async def test_subprocess_test_double_is_scripted_over_http():
    from tests.openai_server_process import OpenAIProtocolServerProcess

    with OpenAIProtocolServerProcess() as proc:
        proc.fault("chat", status=503, times=2)
        assert proc.pending_faults("chat") == 2
        chat = OpenAIChat(ChatConfig(base_url=proc.base_url, backoff_base_s=0.01, backoff_max_s=0.05))
        result = await chat.answer(QUESTION, PASSAGES, FACTS)
        await chat.aclose()
        assert [r.status for r in proc.requests("chat")] == [503, 503, 200]
        assert result.answer.endswith("[1]") and result.model == "gpt-4o-mini-testdouble"
        proc.reset()
        assert proc.requests() == [] and proc.pending_faults("chat") == 0


async def test_chat_service_streams_the_backend_and_closes_it_when_the_caller_stops():
    from deployments.chat.service import ChatService

    closed = []

    class Backend(ExtractiveChat):
        async def open_stream(self, query, passages, facts):
            # Like OpenAIChat: the provider's stream is open once the first piece is read from it.
            first, rest = await super().open_stream(query, passages, facts)

            async def provider():
                try:
                    yield first
                    async for piece in rest:
                        yield piece
                finally:
                    closed.append(True)

            pieces = provider()
            return await anext(pieces), pieces

    service = ChatService(ChatConfig(), Backend())
    passages = ["Qdrant is a vector search engine written in Rust. It stores points."]
    whole = (await service.answer("Which engine is written in Rust?", passages, [])).answer
    assert (
        "".join([p.content async for p in service.answer_stream("Which engine is written in Rust?", passages, [])])
        == whole
    )
    stream = service.answer_stream("Which engine is written in Rust?", passages, [])
    await anext(stream)
    await stream.aclose()  # the caller went away after the first piece
    assert closed == [True, True]
    assert await service.ping() == "extractive (no LLM)"
