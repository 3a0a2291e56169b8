"""Answers over a retrieval: the passages and the graph's facts go to the chat stage, whole (`answer`) or streamed
(`answer_stream`); a chat failure falls back to the extractive answer (reported in `degraded`) unless the config
turns that off (503 naming chat)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from deployments.chat.backends import parse_citations
from deployments.chat.extractive import ExtractiveChat
from deployments.config import AppConfig
from deployments.errors import StageError, StageUnavailable, is_stage_failure
from deployments.ingress.fusion import graph_facts
from deployments.ingress.retrieval import Retrieval
from deployments.ingress.stage_calls import Clock, failure_reason, run_stage
from deployments.models import (
    AnswerRequest,
    AnswerResponse,
    ChatDelta,
    ChatResult,
    Citation,
    Degraded,
    Hit,
    RetrieveResponse,
    StreamDelta,
    StreamDone,
    StreamError,
    StreamReferences,
)
from deployments.observability import current_request_id
from deployments.stages import Stages

log = logging.getLogger("graphrag.pipeline")


async def _no_pieces() -> AsyncIterator[ChatDelta]:
    return
    yield


async def _close(stream: AsyncIterator) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _citations(answer: str, passages: list[Hit]) -> list[Citation]:
    """The [n] markers of an answer that point at a passage given to the chat stage (passage n-1)."""
    return [
        Citation(n=n, chunk_id=passages[n - 1].chunk_id, doc_id=passages[n - 1].doc_id)
        for n in parse_citations(answer, len(passages))
    ]


def _retrieved_fields(retrieved: RetrieveResponse) -> dict:
    """The retrieval's fields as they are, for a response that extends it (AnswerResponse, StreamDone): no
    dump-and-rebuild of hits and subgraph per request. Not for an event sent before `timings` changes again."""
    return {name: value for name, value in retrieved if name != "degraded"}


class Answering:
    def __init__(self, config: AppConfig, stages: Stages, retrieval: Retrieval):
        self.config = config
        self.stages = stages
        self.retrieval = retrieval
        self.extractive = ExtractiveChat()

    async def _retrieve_for_answer(
        self, req: AnswerRequest, clock: Clock
    ) -> tuple[RetrieveResponse, list[Hit], list[str], list[str], list[Degraded]]:
        """Retrieval, then what the chat stage gets: the passages (and their texts) and the graph's facts."""
        retrieved = await self.retrieval.run(req, clock)
        passages = retrieved.hits[: self.config.chat.max_passages]
        return retrieved, passages, [h.text for h in passages], graph_facts(retrieved.graph), list(retrieved.degraded)

    async def answer(self, req: AnswerRequest) -> AnswerResponse:
        clock = Clock()
        retrieved, passages, texts, facts, degraded = await self._retrieve_for_answer(req, clock)
        result: ChatResult | None
        if not passages:
            result = ChatResult(answer="No ingested passage matches this question.", model="none")
        else:
            result, chat_err, retrieved.timings.chat = await run_stage(
                "chat", self.stages.chat.answer(req.query, texts, facts), self.config.retrieval.chat_timeout_s, clock
            )
            if chat_err:
                self._fall_back_from_chat(chat_err.error, degraded)
                result = await self.extractive.answer(req.query, texts, facts)
        assert result is not None  # run_stage returns a result or an error
        retrieved.timings.total = clock.timing(clock.t0, time.time())
        return AnswerResponse(
            **_retrieved_fields(retrieved),
            degraded=degraded,
            answer=result.answer,
            citations=_citations(result.answer, passages),
            model=result.model,
        )

    async def answer_stream(
        self, req: AnswerRequest
    ) -> AsyncIterator[StreamReferences | StreamDelta | StreamDone | StreamError]:
        """`answer`, streamed: the references, the answer in pieces, then the whole response (or an error event).

        Retrieval and the chat's first piece complete before the first event, so their failures still raise
        (an HTTP error status); a chat failure there falls back to the extractive answer like `answer` does."""
        clock = Clock()
        retrieved, passages, texts, facts, degraded = await self._retrieve_for_answer(req, clock)
        timeout = self.config.retrieval.chat_timeout_s
        start = time.time()
        if not passages:
            first, rest = ChatDelta(content="No ingested passage matches this question.", model="none"), _no_pieces()
        else:
            try:
                first, rest = await asyncio.wait_for(self._open_chat_stream(req.query, texts, facts), timeout)
            except Exception as exc:
                if not is_stage_failure(exc):
                    raise
                error = failure_reason(exc, timeout)
                log.warning("stage chat failed: %s", error)
                self._fall_back_from_chat(error, degraded)
                first, rest = await self.extractive.open_stream(req.query, texts, facts)
        yield StreamReferences(**retrieved.model_dump(exclude={"degraded"}), degraded=degraded, model=first.model)
        parts = [first.content]
        yield StreamDelta(content=first.content)
        try:
            while True:
                try:  # the chat timeout bounds the whole answer; never wrap a yield in a timeout
                    piece = await asyncio.wait_for(anext(rest), max(start + timeout - time.time(), 0.001))
                except StopAsyncIteration:
                    break
                parts.append(piece.content)
                yield StreamDelta(content=piece.content)
        except Exception as exc:  # the answer broke off after it had started: say so, never end it silently
            if is_stage_failure(exc):
                error = failure_reason(exc, timeout)
                log.warning("stage chat failed mid-stream: %s", error)
            else:  # a bug: the status is already sent, so the event carries the id the log has the traceback under
                error = f"internal error (request id {current_request_id() or '-'})"
                log.exception("unexpected error mid-stream")
            yield StreamError(stage="chat", detail=f"the answer broke off: {error}")
            return
        finally:
            await _close(rest)
        answer = "".join(parts)
        if passages:
            retrieved.timings.chat = clock.timing(start, time.time())
        retrieved.timings.total = clock.timing(clock.t0, time.time())
        yield StreamDone(
            **_retrieved_fields(retrieved),
            degraded=degraded,
            answer=answer,
            citations=_citations(answer, passages),
            model=first.model,
        )

    def _fall_back_from_chat(self, error: str, degraded: list[Degraded]) -> None:
        """After a chat failure: the extractive answer follows, reported in `degraded`, or 503 naming the chat
        stage when the config turns the fallback off."""
        if not self.config.chat.fallback_extractive:
            raise StageUnavailable("chat", error)
        degraded.append(Degraded(stage="chat", error=error))

    async def _open_chat_stream(
        self, query: str, texts: list[str], facts: list[str]
    ) -> tuple[ChatDelta, AsyncIterator[ChatDelta]]:
        stream = self.stages.chat.answer_stream(query, texts, facts)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise StageError("chat", "the chat stream ended before any text") from None
        except BaseException:
            await _close(stream)
            raise
        return first, stream
