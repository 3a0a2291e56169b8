"""The one way this app builds an OpenAI-compatible client (chat, LLM extraction, remote embeddings)."""

from __future__ import annotations

import openai
from pydantic import SecretStr

# Sent to servers that need no key: the SDK insists on one.
PLACEHOLDER_KEY = "unused"


def openai_client(
    base_url: str, api_key: SecretStr | None, timeout_s: float, max_retries: int = 0
) -> openai.AsyncOpenAI:
    """A client for `base_url` with the configured key only: never OPENAI_API_KEY from the environment, which
    would send that key to whatever server is configured. Retries are the caller's (0) unless it asks."""
    key = api_key.get_secret_value() if api_key else PLACEHOLDER_KEY
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=max_retries, timeout=timeout_s)
