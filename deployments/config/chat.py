"""The `chat` section: the OpenAI-compatible providers that write the answer, and their retries."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from deployments.config.section import BreakerConfig, Section


class ChatProvider(Section):
    """A further OpenAI-compatible chat provider, tried when the ones before it fail."""

    base_url: str
    api_key: SecretStr | None = None
    model: str


class ChatConfig(Section):
    # OpenAI-compatible base URL (".../v1"); when unset, extractive answers.
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    # Tried in order after `base_url` fails (each with its own retries); needs `base_url`.
    fallbacks: list[ChatProvider] = Field(default_factory=list)
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(512, ge=1)
    max_attempts: int = Field(4, ge=1, le=10)
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(8.0, gt=0)
    timeout_s: float = Field(60.0, gt=0, description="Bound on all attempts together.")
    max_passages: int = Field(6, ge=1, le=50)
    breaker: BreakerConfig = BreakerConfig()  # each provider's (the primary and every fallback has its own)
    fallback_extractive: bool = Field(
        True,
        description="When every provider fails: the extractive answer (listed in `degraded`), else 503 naming chat.",
    )

    @model_validator(mode="after")
    def _fallbacks_need_primary(self) -> ChatConfig:
        if self.fallbacks and not self.base_url:
            raise ValueError("chat.fallbacks needs chat.base_url (the first provider)")
        return self
