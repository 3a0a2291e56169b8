"""Exceptions that cross stage boundaries; the ingress maps them to HTTP statuses."""

from __future__ import annotations

import shutil
from pathlib import Path


class StageError(Exception):
    """A stage failed to do its work: the ingress reports it in `degraded`, or as a 503 when it is required."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage} stage: {reason}")
        self.stage = stage
        self.reason = reason

    def __reduce__(self):  # keep the fields across Ray's pickling
        return (type(self), (self.stage, self.reason))


class StageUnavailable(StageError):
    """The stage's backend cannot be reached (connection refused, timed out, stopped)."""


class StorageFull(StageError):
    """A store's disk has no space left: writes are refused (HTTP 507) until there is; reads go on."""


def is_disk_full(error: BaseException | str) -> bool:
    """ENOSPC, raised here or reported in an engine's message (Qdrant Edge's Rust error, ArcadeDB's Java one)."""
    if isinstance(error, OSError) and error.errno == 28:
        return True
    return "no space left on device" in str(error).lower()


def require_free_space(path: str | Path, min_free_mb: int, stage: str) -> None:
    """Raises StorageFull while the filesystem of `path` (or its nearest existing parent) has less room than that."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < min_free_mb * 1024 * 1024:
        raise StorageFull(
            stage,
            f"no space left on device for writes: {free / 2**20:.0f} MB free under {path}, "
            f"below the {min_free_mb} MB kept free (vector.min_free_disk_mb); free some space",
        )


class CircuitOpen(StageUnavailable):
    """The backend failed too often in a row: skipped, without waiting on it, until a probe finds it back."""


class StageTimeout(StageUnavailable):
    """The stage's backend did not finish the work within its time bound, and was told to stop (HTTP 504)."""


class CollectionNotFound(Exception):
    """A search named a collection nothing was ever ingested into (HTTP 404)."""

    def __init__(self, collection: str):
        super().__init__(f"collection {collection!r} does not exist; ingest documents into it first")
        self.collection = collection

    def __reduce__(self):
        return (type(self), (self.collection,))


class BadRequest(Exception):
    """The request is well-formed JSON but cannot be run as asked, e.g. a refused graph query (HTTP 400)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.reason,))


class NotFound(Exception):
    """A named document or entity does not exist (HTTP 404)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what

    def __reduce__(self):
        return (type(self), (self.what,))


def _transport_failures() -> tuple[type[BaseException], ...]:
    """How a stage's failure arrives through Serve handles when it is not our own StageError: the replica died
    or is unreachable, its queue is full, Ray or gRPC could not carry the call."""
    try:
        import grpc
        from ray import exceptions as ray_errors
        from ray.serve import exceptions as serve_errors
    except ImportError:  # plain-asyncio use without Ray
        return ()
    return (
        ray_errors.RayActorError,  # ActorDiedError, ActorUnavailableError
        ray_errors.RaySystemError,
        ray_errors.WorkerCrashedError,
        ray_errors.NodeDiedError,
        ray_errors.LocalRayletDiedError,
        ray_errors.ObjectLostError,
        ray_errors.OutOfMemoryError,
        ray_errors.ObjectStoreFullError,
        ray_errors.TaskUnschedulableError,
        ray_errors.ActorUnschedulableError,
        ray_errors.TaskCancelledError,  # the replica cancelled it (e.g. shutting down); our own cancel is CancelledError
        serve_errors.BackPressureError,
        serve_errors.DeploymentUnavailableError,
        serve_errors.ReplicaUnavailableError,
        grpc.RpcError,  # the throughput-optimized data plane's transport
    )


# Timeouts and connection errors (OSError covers ConnectionError and TimeoutError) are the backend's fault too.
_STAGE_FAILURES: tuple[type[BaseException], ...] = (StageError, TimeoutError, OSError, *_transport_failures())


def is_stage_failure(exc: BaseException) -> bool:
    """True when a stage failed (timeout, unreachable backend, replica gone, the stage's own StageError): the
    request may go on without it (`degraded`) or answer 503. False for anything else, e.g. a TypeError in our code,
    raised here or in a replica (a RayTaskError whose cause is the TypeError): that is a bug, answered with a 500."""
    if isinstance(exc, _STAGE_FAILURES):
        return True
    # A RayTaskError that Ray could not turn into an instance of its cause's class keeps the cause aside.
    cause = getattr(exc, "cause", None)
    return isinstance(cause, BaseException) and cause is not exc and is_stage_failure(cause)
