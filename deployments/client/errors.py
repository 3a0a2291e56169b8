"""The client's errors: one class per HTTP status the API answers, each carrying the server's `detail` (and
`stage` for a failed stage), so that callers catch what they can handle (`NotFoundError`, `RateLimitError`)."""

from __future__ import annotations

from typing import Any

import httpx


class GraphRAGError(Exception):
    """Anything the client raises about a request."""


class APIConnectionError(GraphRAGError):
    """The server could not be reached, or the connection broke before an answer."""


class APIStatusError(GraphRAGError):
    """The server answered with a 4xx or 5xx status."""

    status_code = 0

    def __init__(self, response: httpx.Response):
        self.response = response
        self.status_code = response.status_code
        body = _json(response)
        detail = body.get("detail", response.text[:500]) if isinstance(body, dict) else response.text[:500]
        self.detail: Any = detail
        self.stage: str | None = body.get("stage") if isinstance(body, dict) else None  # the failed stage (503, 504)
        self.request_id: str | None = response.headers.get("x-request-id")
        super().__init__(
            f"HTTP {self.status_code} from {response.request.method} {response.request.url.path}: {detail}"
        )


class BadRequestError(APIStatusError):
    status_code = 400


class AuthenticationError(APIStatusError):
    status_code = 401


class PermissionDeniedError(APIStatusError):
    status_code = 403


class NotFoundError(APIStatusError):
    status_code = 404


class RequestTooLargeError(APIStatusError):
    status_code = 413


class UnprocessableEntityError(APIStatusError):
    status_code = 422


class RateLimitError(APIStatusError):
    status_code = 429


class InternalServerError(APIStatusError):
    status_code = 500


class ServiceUnavailableError(APIStatusError):
    status_code = 503


class GatewayTimeoutError(APIStatusError):
    status_code = 504


_BY_STATUS: dict[int, type[APIStatusError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        RequestTooLargeError,
        UnprocessableEntityError,
        RateLimitError,
        InternalServerError,
        ServiceUnavailableError,
        GatewayTimeoutError,
    )
}


def error_for(response: httpx.Response) -> APIStatusError:
    return _BY_STATUS.get(response.status_code, APIStatusError)(response)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
