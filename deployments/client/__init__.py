"""A typed Python client for graphrag-serve's HTTP API, blocking (`GraphRAGClient`) and asyncio
(`AsyncGraphRAGClient`), on httpx. Methods return the API's own pydantic models (deployments/models.py)."""

from deployments.client.async_client import AsyncGraphRAGClient
from deployments.client.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    GatewayTimeoutError,
    GraphRAGError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from deployments.client.sync_client import GraphRAGClient

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "AsyncGraphRAGClient",
    "AuthenticationError",
    "BadRequestError",
    "GatewayTimeoutError",
    "GraphRAGClient",
    "GraphRAGError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
]
