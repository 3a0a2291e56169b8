"""Calling a stage from the pipeline: under a timeout, timed on the request's clock, a stage failure reported
(`degraded`) rather than hidden, anything else (a bug, a 404) raised as it is."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from deployments.errors import StageError, is_stage_failure
from deployments.models import Degraded, Stage, StageTiming

log = logging.getLogger("graphrag.pipeline")
T = TypeVar("T")


class Clock:
    """Stage timings as offsets from the request's start, in wall-clock time so remote spans line up."""

    def __init__(self) -> None:
        self.t0 = time.time()

    def timing(self, start: float, end: float) -> StageTiming:
        return StageTiming(start_ms=round((start - self.t0) * 1000, 3), duration_ms=round((end - start) * 1000, 3))


def failure_reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, StageError):
        return exc.reason
    text = str(exc).strip().splitlines()
    # Ray wraps remote errors with a traceback; the last line holds the cause.
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]


async def run_stage(
    stage: Stage, call: Awaitable[T], timeout: float, clock: Clock
) -> tuple[T | None, Degraded | None, StageTiming]:
    start = time.time()
    try:
        result = await asyncio.wait_for(call, timeout)
        return result, None, clock.timing(start, time.time())
    except Exception as exc:  # a stage failure is reported as degraded; anything else (a bug, a 404) propagates
        if not is_stage_failure(exc):
            raise
        log.warning("stage %s failed: %s", stage, failure_reason(exc, timeout))
        return None, Degraded(stage=stage, error=failure_reason(exc, timeout)), clock.timing(start, time.time())
