"""What the OpenAI-protocol test double (tests/openai_server.py) speaks: its routes, the faults tests script, the
requests it records, and the deterministic functions its replies are made of (never a model)."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from fastapi.responses import JSONResponse

ROUTES = {
    "chat": "/v1/chat/completions",
    "embeddings": "/v1/embeddings",
    "models": "/v1/models",
    "rerank": "/rerank",  # TEI shape
    "cohere_rerank": "/v1/rerank",  # Cohere / Jina shape
}
_TOKEN = re.compile(r"\w+", re.UNICODE)


def route_path(route: str) -> str:
    """Accept an alias ("chat") or a path ("/v1/chat/completions")."""
    path = ROUTES.get(route, route)
    if path not in ROUTES.values():
        raise ValueError(f"unknown route {route!r}; use one of {sorted(ROUTES)} or {sorted(ROUTES.values())}")
    return path


@dataclass
class Fault:
    """What to do to one request: wait `delay` s, then answer `status` (with Retry-After) or invalid JSON."""

    status: int | None = None
    retry_after: float | str | None = None  # seconds, or an HTTP date string, sent as Retry-After
    delay: float = 0.0
    invalid_json: bool = False
    body: Any = None  # error body; an OpenAI-style error by default
    content: str | None = None  # chat: reply with this assistant message content instead of the default answer


@dataclass
class RecordedRequest:
    route: str
    method: str
    body: Any
    headers: dict[str, str]
    t: float  # wall clock, comparable across processes
    mono: float  # monotonic clock of the server process: use for gaps
    status: int | None = None
    fault: dict[str, Any] | None = None
    disconnected: bool = False  # the client went away (e.g. cancelled) before the reply was sent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def words(text: str) -> list[str]:
    return [w.lower() for w in _TOKEN.findall(text)]


def hashed_embedding(text: str, dim: int) -> list[float]:
    """Deterministic unit vector: signed hashed bag of words (texts sharing words are close)."""
    vec = [0.0] * dim
    for w in words(text):
        h = hashlib.md5(w.encode()).digest()
        idx = int.from_bytes(h[:4], "little") % dim
        vec[idx] += 1.0 if h[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0:
        vec[0] = 1.0
        return vec
    return [v / norm for v in vec]


def overlap_score(query: str, text: str) -> float:
    """Share of the query's distinct words found in the text, in [0, 1]."""
    q = set(words(query))
    if not q:
        return 0.0
    return len(q & set(words(text))) / len(q)


def first_passage(messages: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The first "[n] text" line of the last user message."""
    for msg in reversed(messages):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        for line in str(content or "").splitlines():
            m = re.match(r"\s*\[(\d+)\]\s*(.+)", line)
            if m:
                return m.group(1), m.group(2).strip()
        return None
    return None


def error_response(status: int, message: str, headers: dict[str, str] | None = None, body: Any = None) -> JSONResponse:
    kind = {429: "rate_limit_exceeded", 400: "invalid_request_error", 401: "invalid_api_key"}.get(
        status, "server_error"
    )
    content = body if body is not None else {"error": {"message": message, "type": kind, "code": kind}}
    return JSONResponse(content, status_code=status, headers=headers)
