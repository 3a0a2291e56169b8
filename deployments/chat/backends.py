"""Chat stage: answers a question from numbered passages and graph facts with [n] citations, through an
OpenAI-compatible API (with our own bounded retry loop) or, without an LLM, extractively."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import openai

from deployments.chat.extractive import ExtractiveChat
from deployments.config import ChatConfig
from deployments.errors import StageError, StageUnavailable
from deployments.models import ChatDelta, ChatResult
from deployments.net import redact_url
from deployments.openai_client import openai_client

logger = logging.getLogger(__name__)
STAGE = "chat"
T = TypeVar("T")


SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages and the knowledge-graph facts given by the user. "
    "Cite every statement with the number of the passage it comes from in square brackets, like [1] or [2][3]. "
    "Do not use outside knowledge. If the passages and facts do not contain the answer, say that you do not know."
)


class ChatBackend(Protocol):
    async def answer(self, query: str, passages: list[str], facts: list[str]) -> ChatResult: ...
    async def open_stream(
        self, query: str, passages: list[str], facts: list[str]
    ) -> tuple[ChatDelta, AsyncIterator[ChatDelta]]: ...
    async def ping(self) -> str: ...
    async def aclose(self) -> None: ...


def build_messages(query: str, passages: list[str], facts: list[str]) -> list[dict[str, str]]:
    numbered = "\n".join(f"[{i}] {' '.join(p.split())}" for i, p in enumerate(passages, 1)) or "(none)"
    fact_lines = "\n".join(f"- {f}" for f in facts) or "(none)"
    user = f"Passages:\n{numbered}\n\nGraph facts:\n{fact_lines}\n\nQuestion: {query}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def parse_citations(answer: str, n_passages: int) -> list[int]:
    """The passage numbers cited as [n] (or [n, m]) that exist, in order of first appearance."""
    seen: list[int] = []
    for group in _CITATION.findall(answer):
        for part in group.split(","):
            n = int(part)
            if 1 <= n <= n_passages and n not in seen:
                seen.append(n)
    return seen


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None if absent."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


class OpenAIChat:
    """An OpenAI-compatible chat completions API. The SDK's own retries are off (max_retries=0): this class
    retries 429, 5xx, connection errors and unparseable replies with jittered exponential backoff, honours
    Retry-After, and stops at `max_attempts` or when the next wait would pass the `timeout_s` budget."""

    def __init__(self, config: ChatConfig):
        if not config.base_url:
            raise ValueError("OpenAIChat needs chat.base_url")
        self.config = config
        self.name = f"openai:{redact_url(config.base_url)}"
        self._client: openai.AsyncOpenAI | None = None
        # Around the whole retry loop: once open, a request skips this provider (the next one, or extractive).
        self.breaker = config.breaker.make(STAGE, self.name, probe=self._list_models)

    def _openai(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai_client(self.config.base_url or "", self.config.api_key, self.config.timeout_s)
        return self._client

    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
        return cap * random.uniform(0.5, 1.0)  # jitter spreads out replicas that failed together

    async def answer(self, query: str, passages: list[str], facts: list[str]) -> ChatResult:
        messages = build_messages(query, passages[: self.config.max_passages], facts)

        async def attempt(remaining: float) -> ChatResult:
            resp = await self._openai().chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
                timeout=remaining,
            )
            return self._result(resp)

        return await self._with_retries(attempt)

    async def open_stream(
        self, query: str, passages: list[str], facts: list[str]
    ) -> tuple[ChatDelta, AsyncIterator[ChatDelta]]:
        """The first piece of a streamed answer, and the rest. Retries (like `answer`) only until the first piece:
        once text has been sent on, a failure ends the stream with a StageError."""
        messages = build_messages(query, passages[: self.config.max_passages], facts)

        async def attempt(remaining: float) -> tuple[ChatDelta, AsyncIterator[ChatDelta]]:
            stream = await self._openai().chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
                timeout=remaining,
                stream=True,
            )
            pieces = self._pieces(stream)
            try:
                first = await anext(pieces)
            except StopAsyncIteration:
                raise StageError(STAGE, f"{self.name} streamed an empty answer") from None
            except BaseException:
                await pieces.aclose()
                raise
            return first, pieces

        return await self._with_retries(attempt)

    async def _pieces(self, stream: Any) -> AsyncGenerator[ChatDelta, None]:
        try:
            async for chunk in stream:
                if not chunk.choices:  # e.g. a usage-only chunk
                    continue
                content = chunk.choices[0].delta.content
                if content:
                    yield ChatDelta(content=content, model=chunk.model or self.config.model)
        except openai.APIError as exc:
            raise StageError(STAGE, f"{self.name} broke off the stream: {exc}") from exc
        finally:
            await stream.close()  # closes the HTTP response: the provider stops generating

    async def _with_retries(self, attempt_once: Callable[[float], Awaitable[T]]) -> T:
        return await self.breaker.call(lambda: self._retry_loop(attempt_once))

    async def _retry_loop(self, attempt_once: Callable[[float], Awaitable[T]]) -> T:
        cfg = self.config
        start = time.monotonic()
        deadline = start + cfg.timeout_s
        last = "no attempt made"
        unreachable = False
        attempt = 0
        while attempt < cfg.max_attempts:
            attempt += 1
            # Every wait below is checked against the deadline, so some budget is left here.
            remaining = max(deadline - time.monotonic(), 0.001)
            retry_after: float | None = None
            try:
                # The SDK timeout is per read; asyncio.timeout bounds the whole attempt.
                async with asyncio.timeout(remaining):
                    return await attempt_once(remaining)
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status != 429 and status < 500:
                    raise StageError(
                        STAGE, f"{self.name} rejected the request with HTTP {status} (not retried): {_message(exc)}"
                    ) from exc
                last, unreachable = f"HTTP {status}: {_message(exc)}", False
                retry_after = parse_retry_after(exc.response.headers)
            except (openai.APITimeoutError, TimeoutError):
                last, unreachable = f"timed out after {time.monotonic() - start:.1f}s", True
            except openai.APIConnectionError as exc:
                last, unreachable = f"connection failed: {exc.__cause__ or exc}", True
            except (
                ValueError,
                openai.APIResponseValidationError,
            ) as exc:  # a 2xx body that is not JSON or not a completion
                last, unreachable = f"unparseable response: {exc}", False
            if attempt >= cfg.max_attempts:
                break
            delay = retry_after * random.uniform(1.0, 1.1) if retry_after is not None else self._backoff(attempt)
            if time.monotonic() + delay >= deadline:
                wait = f"Retry-After {retry_after:.1f}s" if retry_after is not None else f"backoff {delay:.2f}s"
                last += f"; the next {wait} would pass the {cfg.timeout_s}s budget"
                break
            logger.warning("chat attempt %d/%d failed (%s); retrying in %.2fs", attempt, cfg.max_attempts, last, delay)
            await asyncio.sleep(delay)
        error = StageUnavailable if unreachable else StageError
        raise error(
            STAGE,
            f"{self.name} failed after {attempt} attempt(s) in {time.monotonic() - start:.1f}s "
            f"(max {cfg.max_attempts}, budget {cfg.timeout_s}s); last error: {last}",
        )

    def _result(self, resp: Any) -> ChatResult:
        if not getattr(resp, "choices", None):
            raise StageError(STAGE, f"{self.name} returned no choices")
        content = resp.choices[0].message.content
        if not content or not content.strip():
            reason = resp.choices[0].finish_reason
            raise StageError(STAGE, f"{self.name} returned an empty answer (finish_reason={reason})")
        return ChatResult(answer=content.strip(), model=resp.model or self.config.model)

    async def ping(self) -> str:
        await self.breaker.call(self._list_models)  # a readiness probe is a probe of the circuit too
        return f"{self.name} model {self.config.model}"

    async def _list_models(self) -> None:
        try:
            await self._openai().models.list(timeout=min(self.config.timeout_s, 5.0))
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise StageError(STAGE, f"{self.name} rejected the credentials (HTTP {exc.status_code})") from exc
            if exc.status_code >= 500:
                raise StageUnavailable(STAGE, f"{self.name} answered HTTP {exc.status_code}") from exc
            # Some compatible servers have no /models: any other HTTP answer still proves reachability.
        except (openai.APIConnectionError, ValueError) as exc:
            raise StageUnavailable(STAGE, f"{self.name} unreachable: {exc.__cause__ or exc}") from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or body
    return str(body or exc.message)[:300]


class FallbackChat:
    """A chain of providers tried in order: the next one when the one before fails after its own retries
    (before the first streamed piece; once text is under way there is no switching)."""

    def __init__(self, providers: list[OpenAIChat]):
        self.providers = providers
        self.name = " -> ".join(p.name for p in providers)

    async def _first_success(self, call: Callable[[OpenAIChat], Awaitable[T]]) -> T:
        failures = []
        for provider in self.providers:
            try:
                return await call(provider)
            except StageError as exc:
                failures.append(f"{provider.name}: {exc.reason}")
                logger.warning("chat provider %s failed, trying the next one: %s", provider.name, exc.reason)
        raise StageUnavailable(STAGE, f"all {len(self.providers)} chat providers failed: " + " | ".join(failures))

    async def answer(self, query: str, passages: list[str], facts: list[str]) -> ChatResult:
        return await self._first_success(lambda p: p.answer(query, passages, facts))

    async def open_stream(
        self, query: str, passages: list[str], facts: list[str]
    ) -> tuple[ChatDelta, AsyncIterator[ChatDelta]]:
        return await self._first_success(lambda p: p.open_stream(query, passages, facts))

    async def ping(self) -> str:
        # Ready when any provider is: the chain answers as long as one does.
        return await self._first_success(lambda p: p.ping())

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()


def make_chat(config: ChatConfig) -> ChatBackend:
    if config.base_url and config.fallbacks:
        providers = [OpenAIChat(config)] + [
            OpenAIChat(
                config.model_copy(
                    update={"base_url": f.base_url, "api_key": f.api_key, "model": f.model, "fallbacks": []}
                )
            )
            for f in config.fallbacks
        ]
        return FallbackChat(providers)
    if config.base_url:
        return OpenAIChat(config)
    return ExtractiveChat(max_passages=config.max_passages)
