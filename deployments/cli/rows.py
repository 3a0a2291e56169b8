"""Bulk rows for people who bring their own embeddings: `{id, text, metadata, vector}` from JSONL(.gz) or Parquet.

A row with a `vector` is one chunk: the server stores it as it is, with that vector, and extracts its graph as
usual; a row without one is chunked and embedded like any document. `metadata` is an object (in Parquet also a
JSON string, or a struct column). Each row is checked with the API's own `Document` model as it is read, so a
missing or wrong-typed field is an error naming the row (file and line, or row number), not a refused batch.

Parquet needs pyarrow, an optional extra (`pip install 'graphrag-serve[parquet]'`): the server and the other
sources do not use it, and it is a large wheel.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deployments.models import Document

PARQUET_BATCH_ROWS = 1024  # rows decoded at a time: a file of any size reads in bounded memory


class RowError(ValueError):
    """A row the importer cannot send; the message names it."""


def _metadata(value: Any, where: str) -> Any:
    if isinstance(value, str):  # Parquet has no free-form object type: a JSON string is the usual stand-in
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise RowError(f"{where}: metadata is a string but not JSON ({exc})") from exc
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)  # a Parquet map column reads as (key, value) pairs
    return {} if value is None else value


def document_of(row: Any, where: str) -> dict:
    """The API document of one row, checked with the API's model; RowError names the row and the field."""
    if not isinstance(row, Mapping):
        raise RowError(f"{where}: a row must be an object with id, text, metadata, vector; got {type(row).__name__}")
    unknown = sorted(set(row) - {"id", "text", "metadata", "vector"})
    if unknown:
        raise RowError(f"{where}: unknown fields {unknown} (a row has id, text, metadata, vector)")
    for name in ("id", "text"):
        if row.get(name) is None:
            raise RowError(f"{where}: the field {name!r} is missing")
    doc: dict[str, Any] = {"id": row["id"], "text": row["text"], "metadata": _metadata(row.get("metadata"), where)}
    if isinstance(doc["id"], int) and not isinstance(doc["id"], bool):
        doc["id"] = str(doc["id"])  # integer ids (BEIR's, a Parquet int64 column) are strings on the wire
    vector = row.get("vector")
    if vector is not None:
        doc["vector"] = vector.tolist() if hasattr(vector, "tolist") else vector
    try:
        Document.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors()[:3])
        raise RowError(f"{where} (id {str(row.get('id'))[:80]!r}): {problems}") from None
    return doc


def json_lines(path: Path) -> Generator[tuple[int, str], None, None]:
    """The non-blank lines of a `.jsonl` (or `.jsonl.gz`) file with their line numbers, counted from 1."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                yield n, line


def read_jsonl_rows(path: Path) -> Iterator[dict]:
    for n, line in json_lines(path):
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise RowError(f"{path}:{n}: not a JSON line ({exc})") from exc
        yield document_of(row, f"{path}:{n}")


def read_parquet_rows(path: Path) -> Iterator[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RowError(
            f"{path}: reading Parquet needs pyarrow: pip install 'graphrag-serve[parquet]' (or use JSONL)"
        ) from None
    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's own error types: a file that is not Parquet
        raise RowError(f"{path}: not a Parquet file ({exc})") from exc
    missing = {"id", "text"} - set(file.schema_arrow.names)
    if missing:
        raise RowError(f"{path}: the columns {sorted(missing)} are missing (rows have id, text, metadata, vector)")
    n = 0
    for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for row in batch.to_pylist():
            n += 1
            yield document_of(row, f"{path}: row {n}")
