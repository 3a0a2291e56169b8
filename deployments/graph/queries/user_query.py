"""POST /v1/graph/query: a user's Cypher, run so that a statement the static guard misses still cannot write.

Three barriers, each enough alone for writes: the guard (cypher_guard, a 400 before anything runs), the store
user (the read-only user: on the embedded ArcadeDB a group that may only read records, on Neo4j a user with the
`reader` role), and a READ session (Neo4j refuses writes in it; ArcadeDB ignores it). Time: the transaction
carries the user-query timeout (Neo4j stops it server-side; the embedded server's reaper terminates the
reader's queries past it), and the client stops waiting then too (504); a replica runs at most
`user_query_max_concurrent` at once (more get 503), so user queries cannot take the store from retrieval. Size:
rows and their JSON bytes are capped (`truncated`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from neo4j import READ_ACCESS, AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction, unit_of_work
from neo4j.exceptions import AuthError, DriverError, Neo4jError, ServiceUnavailable, SessionExpired

from deployments.config import GraphConfig
from deployments.errors import BadRequest, StageError, StageTimeout, StageUnavailable
from deployments.graph.queries.cypher_guard import UnsafeQuery, check_read_only
from deployments.graph.queries.explorer import jsonable
from deployments.graph.store.credentials import CredentialsError, reader_auth
from deployments.graph.store.session import DriverOwner, stale_connection
from deployments.models import GraphQueryResponse

log = logging.getLogger("graphrag.graph")

# Codes of a transaction the server stopped: Neo4j's timeout, ArcadeDB's terminated query.
_STOPPED_CODES = (
    "Transaction.TransactionTimedOut",
    "Transaction.Terminated",
    "Transaction.TransactionTimedOutClientConfiguration",
)
_CONNECT_ATTEMPTS = 2


def _stopped(exc: Neo4jError) -> bool:
    return any((exc.code or "").endswith(code) for code in _STOPPED_CODES)


def json_size(row: list[Any]) -> int:
    """The bytes `row` takes in the response's JSON (UTF-8, compact), plus its separator."""
    return len(json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str).encode()) + 1


class UserQueries(DriverOwner):
    """Runs user Cypher as the store's read-only user, on its own driver (never the stage's root connection)."""

    def __init__(self, config: GraphConfig, uri: Callable[[], Awaitable[str]]):
        self.config = config
        self._uri = uri
        self._driver: AsyncDriver | None = None
        self._lock = asyncio.Lock()
        self._running = 0

    async def _get_driver(self) -> AsyncDriver:
        if self._driver is not None:
            return self._driver
        async with self._lock:
            if self._driver is None:
                try:
                    auth = reader_auth(self.config)
                except CredentialsError as exc:
                    raise StageUnavailable("graph", f"no credentials for user queries: {exc}") from None
                if auth is None:
                    raise StageError(
                        "graph", "user queries are off: set graph.reader_user and graph.reader_password to a read-only "
                        "user of the external server (on Neo4j, a user with the `reader` role only)",
                    )  # fmt: skip
                timeout = self.config.user_query_timeout_s
                self._driver = AsyncGraphDatabase.driver(
                    await self._uri(), auth=auth, connection_timeout=min(5.0, timeout),
                    connection_acquisition_timeout=timeout, max_transaction_retry_time=0,
                )  # fmt: skip
        return self._driver

    async def run(
        self, cypher: str, parameters: dict[str, Any] | None = None, max_rows: int | None = None
    ) -> GraphQueryResponse:
        try:
            check_read_only(cypher)
        except UnsafeQuery as exc:
            raise BadRequest(f"query refused: {exc}") from None
        cfg = self.config
        if self._running >= cfg.user_query_max_concurrent:
            raise StageUnavailable(
                "graph",
                f"{self._running} user queries are running in this replica (graph.user_query_max_concurrent); retry later",
            )
        self._running += 1
        try:
            return await self._run(cypher, parameters, max_rows)
        finally:
            self._running -= 1

    async def _run(self, cypher: str, parameters: dict[str, Any] | None, max_rows: int | None) -> GraphQueryResponse:
        cfg = self.config
        row_cap = min(max_rows or cfg.user_query_max_rows, cfg.user_query_max_rows)
        byte_cap = cfg.user_query_max_bytes
        timeout = cfg.user_query_timeout_s

        async def work(tx: AsyncManagedTransaction) -> GraphQueryResponse:
            result = await tx.run(cypher, parameters or {})
            columns = list(result.keys())
            rows: list[list[Any]] = []
            size, truncated = 2, False  # the list's brackets
            async for record in result:
                if len(rows) == row_cap:
                    truncated = True
                    break
                row = [jsonable(value) for value in record.values()]
                size += json_size(row)
                if size > byte_cap:
                    truncated = True
                    break
                rows.append(row)
            return GraphQueryResponse(
                columns=columns, rows=rows, truncated=truncated, row_cap=row_cap, byte_cap=byte_cap
            )

        async def attempt() -> GraphQueryResponse:
            tx_work = unit_of_work(timeout=timeout)(work)
            for attempt_no in range(1, _CONNECT_ATTEMPTS + 1):
                driver = await self._get_driver()
                try:
                    async with driver.session(database=cfg.database, default_access_mode=READ_ACCESS) as session:
                        return await session.execute_read(tx_work)
                except (ServiceUnavailable, SessionExpired, Neo4jError) as exc:
                    # The server went away (restart): its pooled connections are stale (a restarted ArcadeDB answers
                    # an old one "BEGIN not expected in state: AUTHENTICATION"), so retry on a new driver.
                    stale = isinstance(exc, ServiceUnavailable | SessionExpired) or stale_connection(exc)
                    if not stale or attempt_no == _CONNECT_ATTEMPTS:
                        raise
                    await self._drop_driver(driver)
            raise AssertionError("unreachable")

        where = "the graph store"
        try:
            return await asyncio.wait_for(attempt(), timeout)
        except TimeoutError:
            raise StageTimeout(
                "graph", f"the query did not finish within {timeout:g}s (graph.user_query_timeout_s) and was stopped"
            ) from None
        except AuthError as exc:
            raise StageUnavailable("graph", f"{where} refused the read-only user's credentials: {exc.message}") from exc
        except (ServiceUnavailable, SessionExpired) as exc:
            raise StageUnavailable("graph", f"cannot reach {where}: {exc}") from exc
        except Neo4jError as exc:
            code, message = exc.code or "", exc.message or exc.code or ""
            if _stopped(exc):
                raise StageTimeout(
                    "graph",
                    f"the query did not finish within {timeout:g}s (graph.user_query_timeout_s) and was stopped",
                ) from None
            if code.startswith("Neo.ClientError.Security"):
                # The guard let it through; the store's read-only user did not: the second barrier held.
                log.warning("user query passed the static guard but the store refused it: %s", code)
                raise BadRequest(f"query refused by the graph store (read-only user): {message}"[:1000]) from None
            if code.startswith("Neo.ClientError."):  # syntax, semantics, schema: the query's fault
                raise BadRequest(f"the graph store rejected the query: {message}"[:1000]) from None
            raise StageError("graph", f"{code}: {message}"[:1000]) from exc
        except (DriverError, OSError) as exc:
            raise StageUnavailable("graph", f"cannot reach {where}: {type(exc).__name__}: {exc}") from exc
