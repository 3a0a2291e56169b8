"""Exceptions that cross stage boundaries; the ingress maps them to HTTP statuses."""
from __future__ import annotations


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
