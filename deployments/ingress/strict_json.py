"""Request bodies parsed as strict JSON, and 422 bodies that never echo more than an excerpt of the input.

Python's json module accepts `NaN`, `Infinity` and lone UTF-16 surrogates (`"\\ud800"`); neither is valid
JSON text or Unicode (RFC 8259, I-JSON), and both break later: a 422 that echoes them cannot be serialised, a
stored surrogate cannot be encoded. So they are refused while parsing, as FastAPI refuses any invalid JSON: a
422 of type `json_invalid`. Valid surrogate pairs (`"\\ud83d\\ude00"`) are one character and pass.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

EXCERPT_CHARS = 100  # of an echoed string input
EXCERPT_JSON_CHARS = 200  # of an echoed object or list input, as JSON text
# A \uD800-\uDFFF escape in the raw body: only then can a decoded string hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to inf
        raise _NonFinite(text)
    return value


def loads_strict(body: bytes) -> Any:
    """json.loads, refusing NaN/Infinity and lone surrogates with a JSONDecodeError (FastAPI's 422 json_invalid)."""
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NonFinite as exc:
        doc = body.decode("utf-8", "replace")
        raise json.JSONDecodeError(
            f"{exc.args[0]} is not a finite number (JSON numbers are)", doc, max(doc.find(exc.args[0]), 0)
        ) from None
    escape = _SURROGATE_ESCAPE.search(body)
    if escape is not None and _has_lone_surrogate(value):
        doc = body.decode("utf-8", "replace")
        raise json.JSONDecodeError(
            "a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair): not Unicode text",
            doc,
            escape.start(),
        )
    return value


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Routes whose JSON bodies are parsed by `loads_strict`."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def _text_excerpt(text: str, limit: int) -> str:
    # backslashreplace: a lone surrogate from a query string or path is shown escaped, never breaks the response
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def excerpt(value: Any) -> Any:
    """A short, JSON-serialisable stand-in for an input echoed in a 422."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text_excerpt(value, EXCERPT_CHARS)
    if isinstance(value, bytes | bytearray):  # a body that was not parsed as JSON (another content type)
        return _text_excerpt(bytes(value).decode("utf-8", "backslashreplace"), EXCERPT_CHARS)
    # Anything else as JSON text (bytes, sets, ... via str); non-finite floats render as NaN: shown as text only.
    text = json.dumps(value, default=str, ensure_ascii=False)
    if (
        len(text) <= EXCERPT_JSON_CHARS
        and "NaN" not in text
        and "Infinity" not in text
        and not _has_lone_surrogate(text)
    ):
        return json.loads(text)  # JSON-native from here on, whatever the input held
    return _text_excerpt(text, EXCERPT_JSON_CHARS)


def validation_error_body(errors: list[dict]) -> dict:
    """FastAPI's 422 body (`detail`: type, loc, msg, input, ctx) with every input and context value cut down to an
    excerpt, so it is always serialisable and never echoes a large document back."""
    detail = []
    for error in errors:
        item = {
            "type": error.get("type"),
            "loc": [excerpt(p) for p in error.get("loc", ())],
            "msg": _text_excerpt(str(error.get("msg", "")), 500),
        }
        if "input" in error:
            item["input"] = excerpt(error["input"])
        if error.get("ctx"):
            item["ctx"] = {
                str(k): excerpt(v if isinstance(v, str | int | float | bool | None) else str(v))
                for k, v in error["ctx"].items()
            }
        detail.append(item)
    return {"detail": detail}


async def request_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content=validation_error_body(list(exc.errors())))
