"""The base of every config section, and the circuit breaker settings several sections share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from deployments.breaker import CircuitBreaker


class Section(BaseModel):
    """A config section: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class BreakerConfig(Section):
    """The circuit breaker in front of a backend server (deployments/breaker.py); one per backend per replica."""

    enabled: bool = True
    failure_threshold: int = Field(
        5, ge=1, le=1000, description="Calls in a row that found the server unreachable before it is skipped."
    )
    open_s: float = Field(
        5.0, gt=0, le=3600, description="Seconds the server is skipped before one probe call goes through."
    )

    def make(self, stage: str, backend: str, probe: Callable[[], Awaitable[Any]] | None = None) -> CircuitBreaker:
        return CircuitBreaker(stage, backend, self.failure_threshold, self.open_s, self.enabled, probe=probe)
