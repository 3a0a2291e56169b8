"""The OpenAI-compatible face of the app: `POST /v1/chat/completions` and `GET /v1/models`.

Its own module, not models.py: these are OpenAI's wire shapes (a large, foreign schema) plus the translation
between them and our AnswerRequest / streamed answer events; models.py keeps the app's own API.
The last user message is the query; `collection`, `top_k`, `max_hops` and `filter` may be sent as extra body
fields (`extra_body=` in the openai client). Answers carry their citations twice: as [n] markers and a
"Sources" list in the message, and as the extra fields `citations` and `references`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from deployments.models import (
    COLLECTION_PATTERN,
    DEFAULT_COLLECTION,
    MAX_HOPS,
    MAX_QUERY_CHARS,
    MAX_TOP_K,
    AnswerRequest,
    Citation,
    Degraded,
    Hit,
    Scalar,
    StreamDelta,
    StreamDone,
    StreamError,
    StreamReferences,
)

MODEL_ID = "graphrag"
MAX_MESSAGES = 64
MAX_MESSAGE_CHARS = 100_000


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # name, tool_calls, ...: accepted, unused
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: (
        Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)] | Annotated[list[ContentPart], Field(max_length=256)] | None
    ) = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Unknown OpenAI parameters (temperature, top_p, user, ...) are accepted and ignored, as compatible servers do.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(
        MODEL_ID, min_length=1, max_length=256, description="Any id; answers name the model that answered."
    )
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice is generated.")
    # Retrieval parameters (extensions).
    collection: str = Field(DEFAULT_COLLECTION, pattern=COLLECTION_PATTERN)
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)
    max_hops: int | None = Field(None, ge=0, le=MAX_HOPS)
    filter: dict[str, Scalar] = Field(default_factory=dict)

    _answer_request: AnswerRequest | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _has_query(self) -> ChatCompletionRequest:
        # Validated here, so every bad value is a 422 naming it (never an error later in the route).
        try:
            self._answer_request = AnswerRequest(
                query=self.query(),
                collection=self.collection,
                top_k=self.top_k,
                max_hops=self.max_hops,
                filter=self.filter,
            )
        except ValidationError as exc:
            raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        return self

    def query(self) -> str:
        users = [m for m in self.messages if m.role == "user"]
        if not users:
            raise ValueError("messages must contain a user message: the last one is the question")
        text = users[-1].text().strip()
        if not text:
            raise ValueError("the last user message must contain text")
        if len(text) > MAX_QUERY_CHARS:
            raise ValueError(f"the last user message (the question) is longer than {MAX_QUERY_CHARS} characters")
        return text

    def to_answer_request(self) -> AnswerRequest:
        assert self._answer_request is not None  # set by the validator
        return self._answer_request


class Reference(BaseModel):
    """A passage the answer may cite: [n] is references[n-1]."""

    n: int
    chunk_id: str
    doc_id: str
    text: str
    score: float


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    citations: list[Citation] = Field(description="Extension: the passages the answer cites.")
    references: list[Reference] = Field(
        description="Extension: the passages given to the model, [n] = references[n-1]."
    )
    degraded: list[Degraded] = Field(
        default_factory=list, description="Extension: stages that failed (see /v1/answer)."
    )


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One SSE `data:` line; the first carries `references`, the last `citations`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    references: list[Reference] | None = None
    citations: list[Citation] | None = None
    degraded: list[Degraded] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "graphrag-serve"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def references(hits: list[Hit], max_passages: int) -> list[Reference]:
    return [
        Reference(n=i, chunk_id=h.chunk_id, doc_id=h.doc_id, text=h.text, score=h.score)
        for i, h in enumerate(hits[:max_passages], 1)
    ]


def sources_footer(citations: list[Citation]) -> str:
    if not citations:
        return ""
    return "\n\nSources:\n" + "\n".join(f"[{c.n}] {c.doc_id} ({c.chunk_id})" for c in citations)


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def to_completion(done: StreamDone | Any, max_passages: int) -> ChatCompletion:
    """An AnswerResponse as a chat completion."""
    return ChatCompletion(
        id=completion_id(),
        created=int(time.time()),
        model=done.model,
        choices=[Choice(message=AssistantMessage(content=done.answer + sources_footer(done.citations)))],
        citations=done.citations,
        references=references(done.hits, max_passages),
        degraded=done.degraded,
    )


def sse(payload: BaseModel | dict | str) -> bytes:
    if isinstance(payload, BaseModel):
        payload = payload.model_dump_json(exclude_none=True)
    elif isinstance(payload, dict):
        payload = json.dumps(payload)
    return f"data: {payload}\n\n".encode()


async def answer_events_sse(events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """POST /v1/answer streamed: each event as one `data:` line, then `data: [DONE]`."""
    async for event in events:
        yield f"data: {event.model_dump_json()}\n\n".encode()
    yield b"data: [DONE]\n\n"


async def completion_chunks_sse(events: AsyncIterator[Any], max_passages: int) -> AsyncIterator[bytes]:
    """The same events in OpenAI's chunk format: references with the first chunk, citations with the last."""
    cid, created = completion_id(), int(time.time())
    model = MODEL_ID

    def chunk(delta: Delta, **extra: Any) -> bytes:
        return sse(
            ChatCompletionChunk(
                id=cid,
                created=created,
                model=model,
                choices=[ChunkChoice(delta=delta, **extra.pop("choice", {}))],
                **extra,
            )
        )

    async for event in events:
        if isinstance(event, StreamReferences):
            model = event.model
            yield chunk(
                Delta(role="assistant", content=""),
                references=references(event.hits, max_passages),
                degraded=event.degraded,
            )
        elif isinstance(event, StreamDelta):
            yield chunk(Delta(content=event.content))
        elif isinstance(event, StreamDone):
            footer = sources_footer(event.citations)
            if footer:
                yield chunk(Delta(content=footer))
            yield chunk(Delta(), choice={"finish_reason": "stop"}, citations=event.citations, degraded=event.degraded)
        elif isinstance(event, StreamError):
            # OpenAI's own mid-stream error shape.
            yield sse({"error": {"message": event.detail, "type": "stage_error", "code": event.stage}})
    yield b"data: [DONE]\n\n"
