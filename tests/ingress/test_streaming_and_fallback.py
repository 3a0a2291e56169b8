"""Streamed answers and the chat provider chain, without Ray: the chat stage against the OpenAI-protocol test
double (streaming, retry before the first piece, fallback in order) and the pipeline's streamed answer."""

from __future__ import annotations

import asyncio

import pytest

from deployments.chat.backends import FallbackChat, OpenAIChat, make_chat
from deployments.chat.extractive import ExtractiveChat, split_for_streaming
from deployments.config import AppConfig, ChatConfig
from deployments.errors import StageUnavailable
from deployments.models import AnswerRequest, ChatDelta, StreamDelta, StreamDone, StreamError, StreamReferences
from tests.fakes import FakeStages, make
from tests.openai_server import OpenAIProtocolServer

PASSAGES = ["Marie Curie was born in Warsaw in 1867. She studied physics in Paris.", "The Eiffel Tower is in Paris."]
QUESTION = "Where was Marie Curie born?"


@pytest.fixture(scope="module")
def servers():
    with OpenAIProtocolServer() as primary, OpenAIProtocolServer(model_suffix="-fallback") as fallback:
        yield primary, fallback


@pytest.fixture
def pair(servers):
    for s in servers:
        s.reset()
    yield servers
    for s in servers:
        s.reset()


def config(primary, fallback=None, **overrides) -> ChatConfig:
    opts = dict(
        base_url=primary.base_url, model="m", backoff_base_s=0.05, backoff_max_s=0.2, timeout_s=10, max_attempts=2
    )
    if fallback is not None:
        opts["fallbacks"] = [{"base_url": fallback.base_url, "model": "f"}]
    opts.update(overrides)
    return ChatConfig(**opts)


async def collect(first: ChatDelta, rest) -> tuple[str, str]:
    text = first.content
    async for piece in rest:
        text += piece.content
    return text, first.model


async def test_openai_stream_joins_to_the_plain_answer(pair):
    primary, _ = pair
    chat = OpenAIChat(config(primary))
    try:
        plain = await chat.answer(QUESTION, PASSAGES, [])
        text, model = await collect(*await chat.open_stream(QUESTION, PASSAGES, []))
    finally:
        await chat.aclose()
    assert text.strip() == plain.answer and model == "m-testdouble"
    streamed = primary.requests("chat")[-1]
    assert streamed.body["stream"] is True


async def test_stream_retries_429_before_the_first_piece(pair):
    primary, _ = pair
    primary.fault("chat", status=429, retry_after=0.5)
    chat = OpenAIChat(config(primary))
    try:
        text, _ = await collect(*await chat.open_stream(QUESTION, PASSAGES, []))
    finally:
        await chat.aclose()
    calls = primary.requests("chat")
    assert [c.status for c in calls] == [429, 200] and calls[1].mono - calls[0].mono >= 0.5
    assert "[1]" in text


async def test_fallback_chain_tries_providers_in_order(pair):
    primary, fallback = pair
    chat = make_chat(config(primary, fallback))
    assert isinstance(chat, FallbackChat)
    try:
        assert (await chat.answer(QUESTION, PASSAGES, [])).model == "m-testdouble"  # the first one while it works
        primary.fault("chat", status=503, times=2)  # both attempts of the first provider fail
        result = await chat.answer(QUESTION, PASSAGES, [])
        assert result.model == "f-fallback" and "[1]" in result.answer
        assert [c.status for c in primary.requests("chat")[-2:]] == [503, 503]
        primary.fault("chat", status=500, times=2)
        text, model = await collect(*await chat.open_stream(QUESTION, PASSAGES, []))
        assert model == "f-fallback" and "[1]" in text
        primary.fault("chat", status=500, times=2)
        fallback.fault("chat", status=500, times=2)
        with pytest.raises(StageUnavailable) as err:
            await chat.answer(QUESTION, PASSAGES, [])
        assert primary.base_url in err.value.reason and fallback.base_url in err.value.reason
    finally:
        await chat.aclose()


def test_fallbacks_need_a_primary():
    with pytest.raises(ValueError, match="fallbacks needs chat.base_url"):
        ChatConfig(fallbacks=[{"base_url": "http://127.0.0.1:1/v1", "model": "f"}])


async def test_extractive_stream_pieces_join_back():
    chat = ExtractiveChat()
    whole = (await chat.answer(QUESTION, PASSAGES, [])).answer
    text, model = await collect(*await chat.open_stream(QUESTION, PASSAGES, []))
    assert text == whole and model == "extractive"
    assert "".join(split_for_streaming("a  b\nc ")) == "a  b\nc"


class StreamingFake(FakeStages):
    """FakeStages with a streaming chat that can fail before or after its first piece, or hang."""

    def __init__(self, pieces=("Answer [1] ", "and [2]."), fail_at: int | None = None, hang: bool = False):
        super().__init__()
        self.pieces, self.fail_at, self.hang = list(pieces), fail_at, hang
        self.closed = False

    async def chat_stream(self, query, passages, facts):
        try:
            for i, p in enumerate(self.pieces):
                if self.fail_at == i:
                    raise ConnectionError("provider went away")
                if self.hang and i == 1:
                    await asyncio.sleep(3600)
                yield ChatDelta(content=p, model="stream-llm")
        finally:
            self.closed = True


async def events_of(pipeline, req) -> list:
    return [e async for e in pipeline.answer_stream(req)]


async def test_answer_stream_sends_references_first_then_pieces_then_done():
    fake = StreamingFake()
    events = await events_of(make(fake), AnswerRequest(query="q", stream=True))
    assert isinstance(events[0], StreamReferences) and events[0].hits and events[0].model == "stream-llm"
    assert [e.content for e in events[1:-1]] == fake.pieces
    done = events[-1]
    assert isinstance(done, StreamDone) and done.answer == "".join(fake.pieces)
    assert [c.n for c in done.citations] == [1, 2] and done.citations[0].chunk_id == events[0].hits[0].chunk_id
    assert done.timings.chat is not None and done.degraded == []


async def test_chat_failing_before_first_piece_falls_back_or_raises():
    events = await events_of(make(StreamingFake(fail_at=0)), AnswerRequest(query="text"))
    assert events[0].model == "extractive" and [d.stage for d in events[0].degraded] == ["chat"]
    assert isinstance(events[-1], StreamDone) and events[-1].model == "extractive"
    with pytest.raises(StageUnavailable, match="provider went away"):
        await events_of(make(StreamingFake(fail_at=0), **{"chat.fallback_extractive": False}), AnswerRequest(query="q"))


async def test_chat_failing_mid_stream_ends_with_an_error_event():
    fake = StreamingFake(fail_at=1)
    events = await events_of(make(fake), AnswerRequest(query="q"))
    assert isinstance(events[0], StreamReferences) and isinstance(events[1], StreamDelta)
    assert isinstance(events[-1], StreamError) and "provider went away" in events[-1].detail
    assert fake.closed


async def test_closing_the_stream_early_closes_the_chat_stream():
    fake = StreamingFake(hang=True)
    events = make(fake).answer_stream(AnswerRequest(query="q"))
    assert isinstance(await anext(events), StreamReferences)
    await anext(events)  # the first piece
    pending = asyncio.ensure_future(anext(events))  # waits on the hanging provider
    await asyncio.sleep(0.1)
    pending.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await pending
    await events.aclose()
    assert fake.closed


def test_streamed_answer_config_defaults():
    assert AppConfig.from_args({"data_dir": "/tmp/graphrag-unit"}).limits.request_timeout_s > 0
