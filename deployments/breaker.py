"""A circuit breaker for a backend that runs as its own server (chat, `/rerank`, embeddings endpoint, Bolt).

After `failure_threshold` calls in a row fail because the backend is unreachable (StageUnavailable: refused,
timed out), the circuit opens: calls fail at once with CircuitOpen (the caller reports the stage `degraded` or
takes its fallback) instead of each waiting out a timeout. After `open_s` one probe goes to the server (half-open):
the backend's own cheap `probe` call, in the background, while requests keep failing fast (without a `probe`,
the next call is the probe). Its success closes the circuit, its failure opens it again. So traffic resumes by
itself when the server returns, about `open_s` later. A background probe matters where calls are shared: the
embedder batches concurrent requests into one call and the graph's index refresh serves every waiting search,
so a request as the probe would hold all of them for a timeout.

Errors from a server that answers (a 4xx, a malformed body) do not count: they are the request's or the retry
loop's business, not an outage. A cancelled call (its caller gave up) counts neither way, but frees the probe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from deployments.errors import CircuitOpen, StageError, StageUnavailable

log = logging.getLogger("graphrag.breaker")
T = TypeVar("T")
State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        stage: str,
        backend: str,
        failure_threshold: int = 5,
        open_s: float = 5.0,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[], Awaitable[Any]] | None = None,
    ):
        if failure_threshold < 1 or open_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and open_s > 0")
        self.stage = stage
        self.backend = backend
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self.enabled = enabled
        self._clock = clock
        self._probe = probe
        self._probe_task: asyncio.Task | None = None
        self._failures = 0  # in a row
        self._opened_at: float | None = None
        self._probing = False
        self._last_error = ""
        self.times_opened = 0
        self.rejected = 0  # calls failed fast while open

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.open_s else "open"

    def snapshot(self) -> dict:
        """The state for /readyz and stats: what a person looking at an outage wants to see."""
        out: dict = {
            "state": self.state,
            "failures_in_a_row": self._failures,
            "times_opened": self.times_opened,
            "rejected": self.rejected,
        }
        if self._opened_at is not None:
            out["probe_in_s"] = round(max(self.open_s - (self._clock() - self._opened_at), 0.0), 2)
            out["last_error"] = self._last_error
        return out

    def _admit(self) -> bool:
        """True for a call that may go to the backend; False when it must fail fast. A True in half-open makes
        the caller the one probe."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            if self._probe is None:
                return True
            self._probe_task = asyncio.ensure_future(self._run_probe())
        return False

    async def _run_probe(self) -> None:
        try:
            await self._probe()  # type: ignore[misc]
        except StageUnavailable as exc:
            self._record(exc)
        except StageError:
            self._record(None)  # it answered
        except Exception as exc:  # our own bug in the probe: say so, keep the circuit open
            log.error("%s: the probe of %s failed unexpectedly: %s", self.stage, self.backend, exc, exc_info=exc)
            self._opened_at = self._clock()
        else:
            self._record(None)
            log.info("%s: %s answers again; circuit closed", self.stage, self.backend)
        finally:
            self._probing = False

    def _record(self, error: StageUnavailable | None) -> None:
        if error is None:
            self._failures, self._opened_at, self._last_error = 0, None, ""
            return
        self._failures += 1
        self._last_error = error.reason[:300]
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            if self._opened_at is None:
                self.times_opened += 1
            self._opened_at = self._clock()  # a failed probe opens it for another open_s

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`fn()` through the breaker: CircuitOpen at once while the circuit is open."""
        if not self.enabled:
            return await fn()
        if not self._admit():
            self.rejected += 1
            left = self.snapshot().get("probe_in_s", 0.0)
            raise CircuitOpen(
                self.stage,
                f"{self.backend} is skipped: circuit open after {self._failures} failures in a row "
                f"(last: {self._last_error}); next probe in {left:.1f}s",
            )
        probe = self._opened_at is not None
        try:
            result = await fn()
        except StageUnavailable as exc:
            self._record(exc)
            raise
        except StageError:
            self._record(None)  # the server answered (an HTTP error, a bad body): reachable, so not an outage
            raise
        finally:
            if probe:
                self._probing = False
        self._record(None)
        return result
