"""The graph stage's connection to its Neo4j-protocol server: one driver, transactions with a deadline, retried
after write conflicts and dropped connections, and driver errors mapped to stage errors."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction, unit_of_work
from neo4j.exceptions import (
    AuthError,
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from deployments.config import GraphConfig
from deployments.errors import StageError, StageUnavailable, StorageFull, is_disk_full
from deployments.graph.store.credentials import CredentialsError, admin_auth
from deployments.graph.store.schema import SCHEMA, is_conflict
from deployments.net import redact_url

log = logging.getLogger("graphrag.graph")

# What a transaction runs: a function of the managed transaction (retried as a whole).
Work = Callable[[AsyncManagedTransaction], Awaitable[Any]]


class DriverOwner:
    """Owns one lazily created driver: dropped (a new one comes with the next call) when its server went away,
    closed with its owner."""

    _driver: AsyncDriver | None = None

    async def _drop_driver(self, stale: AsyncDriver) -> None:
        if self._driver is stale:
            self._driver = None
            await close_stale(stale)

    async def aclose(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()


class BoltSession(DriverOwner):
    """Runs transaction work against `uri` with the graph config's timeouts and retry counts."""

    def __init__(self, config: GraphConfig, uri: str):
        self.config = config
        self.uri = uri
        self._driver: AsyncDriver | None = None
        self._schema_done = False
        self.breaker = config.breaker.make(
            "graph", self.where(), probe=lambda: self._run(False, server_agent, config.query_timeout_s)
        )

    def _get_driver(self) -> AsyncDriver:
        if self._driver is None:  # created lazily: the server may come up after this replica
            try:
                auth = admin_auth(self.config)
            except CredentialsError as exc:
                raise StageUnavailable("graph", str(exc)) from None
            self._driver = AsyncGraphDatabase.driver(
                self.uri,
                auth=auth,
                connection_timeout=min(5.0, self.config.query_timeout_s),
                connection_acquisition_timeout=self.config.query_timeout_s,
                # Retries are ours (run): a refused connection should fail fast, not for 30 s.
                max_transaction_retry_time=0,
            )
        return self._driver

    def where(self) -> str:
        return redact_url(self.uri) or "the Bolt server"

    async def run(self, write: bool, work: Work, timeout: float) -> Any:
        """Runs `work` in one managed transaction with a deadline; driver errors become stage errors. Once the
        server was unreachable `graph.breaker.failure_threshold` times in a row, fails fast (CircuitOpen)."""
        return await self.breaker.call(lambda: self._run(write, work, timeout))

    async def _run(self, write: bool, work: Work, timeout: float) -> Any:

        async def attempt_all() -> Any:
            await self._ensure_schema(self._get_driver())
            tx_work = unit_of_work(timeout=timeout)(work)
            attempt = 0
            while True:
                attempt += 1
                driver = self._get_driver()
                try:
                    async with driver.session(database=self.config.database) as session:
                        if write:
                            return await session.execute_write(tx_work)
                        return await session.execute_read(tx_work)
                except Neo4jError as exc:
                    # Concurrent writers: each round one of them commits, so retry (jittered) up to the deadline.
                    if attempt < self.config.conflict_attempts and (
                        isinstance(exc, TransientError) or is_conflict(exc)
                    ):
                        log.debug("graph transaction conflict, retrying (attempt %d): %s", attempt, exc.code)
                        await asyncio.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))
                        continue
                    # A restarted embedded server refuses the login for a moment while it re-applies its users.
                    if attempt < self.config.connect_attempts and (stale_connection(exc) or isinstance(exc, AuthError)):
                        await self._drop_driver(driver)
                        await asyncio.sleep(0.2 * attempt)
                        continue
                    raise
                except (ServiceUnavailable, SessionExpired):
                    # The server went away (restart): its pooled connections are stale, so the next attempt starts
                    # from a new driver. An old pool once kept a restarted ArcadeDB answering "BEGIN not expected
                    # in state: AUTHENTICATION" on every call.
                    if attempt < self.config.connect_attempts:
                        await self._drop_driver(driver)
                        await asyncio.sleep(0.1 * attempt)
                        continue
                    raise

        try:
            return await asyncio.wait_for(attempt_all(), timeout)
        except TimeoutError as exc:
            raise StageUnavailable("graph", f"{self.where()} did not answer within {timeout:g}s") from exc
        except AuthError as exc:
            raise StageUnavailable("graph", f"{self.where()} refused the credentials: {exc.message}") from exc
        except (ServiceUnavailable, SessionExpired) as exc:
            raise StageUnavailable("graph", f"cannot reach {self.where()}: {exc}") from exc
        except TransientError as exc:
            raise StageUnavailable(
                "graph", f"{self.where()} kept failing transiently: {exc.code}: {exc.message}"
            ) from exc
        except Neo4jError as exc:
            error = StorageFull if is_disk_full(exc.message or "") else StageError
            raise error("graph", f"{exc.code}: {exc.message}") from exc
        except (DriverError, OSError) as exc:
            raise StageUnavailable("graph", f"cannot reach {self.where()}: {type(exc).__name__}: {exc}") from exc

    async def _ensure_schema(self, driver: AsyncDriver) -> None:
        # The embedded server created the schema at start; an external one gets it on first use.
        if self._schema_done:
            return
        if not self.config.embedded:
            for statement in SCHEMA:
                await driver.execute_query(statement, database_=self.config.database)
        self._schema_done = True

    async def ping(self) -> str:
        agent = await self.run(False, server_agent, self.config.query_timeout_s)
        return f"bolt {agent} at {self.where()}"


async def server_agent(tx: AsyncManagedTransaction) -> str:
    """The server's name and version, from the cheapest query (a readiness check, the breaker's probe)."""
    summary = await (await tx.run("RETURN 1 AS ok")).consume()
    return summary.server.agent


async def close_stale(driver: AsyncDriver) -> None:
    """Closes a driver whose server went away; closing connections to a dead server may fail: it is dropped anyway."""
    try:
        await driver.close()
    except Exception as exc:
        log.debug("closing a stale graph driver: %s", exc)


def stale_connection(exc: Neo4jError) -> bool:
    """A pooled connection the server does not know in its state (seen on ArcadeDB after a restart)."""
    return (exc.code or "").startswith("Neo.ClientError.Request.Invalid")
