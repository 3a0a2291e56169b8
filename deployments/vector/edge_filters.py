"""The qdrant-edge points, filters and configs the embedded store (deployments/vector/edge.py) writes and searches
with."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from deployments.models import Scalar
from deployments.vector.lexical import LEXICAL_VECTOR
from deployments.vector.store import FIRST_CHUNK_FIELD, FIRST_CHUNK_INDEX, StoredPoint

if TYPE_CHECKING:
    from qdrant_edge import ConditionType


def edge_point(p: StoredPoint, lexical: bool) -> Any:
    import qdrant_edge as qe

    if lexical and p.sparse is not None:
        vector: Any = {"": p.vector, LEXICAL_VECTOR: qe.SparseVector(p.sparse.indices, p.sparse.values)}
    else:
        vector = p.vector
    return qe.Point(id=uuid.UUID(p.id), vector=vector, payload=p.payload)


def documents_filter(doc_ids: list[str], keep: list[str] | None = None) -> Any:
    """Points of `doc_ids`, except the point ids in `keep`."""
    import qdrant_edge as qe

    must_not: list[ConditionType] | None = [qe.HasIdCondition({uuid.UUID(i) for i in keep})] if keep else None
    must: list[ConditionType] = [qe.FieldCondition(key="doc_id", match=qe.MatchAny(list(doc_ids)))]
    return qe.Filter(must=must, must_not=must_not)


def metadata_filter(filter: dict[str, Scalar]) -> Any:
    import qdrant_edge as qe

    if not filter:
        return None
    conditions: list[ConditionType] = []
    for key, value in filter.items():
        field = f"metadata.{key}"
        if isinstance(value, float):  # MatchValue takes str/int/bool only: a float matches as a point range
            conditions.append(qe.FieldCondition(key=field, range=qe.RangeFloat(gte=value, lte=value)))
        elif isinstance(value, bool):
            # qdrant-edge-py 0.9 reads a Python bool as the integer 1/0 (never matching a stored true/false);
            # numpy's bool is no int subclass and arrives as a bool.
            conditions.append(qe.FieldCondition(key=field, match=qe.MatchValue(np.bool_(value))))  # type: ignore[arg-type]  # see above
        else:
            conditions.append(qe.FieldCondition(key=field, match=qe.MatchValue(value)))
    return qe.Filter(must=conditions)


def first_chunks_filter() -> Any:
    import qdrant_edge as qe

    return qe.Filter(must=[qe.FieldCondition(key=FIRST_CHUNK_FIELD, match=qe.MatchValue(FIRST_CHUNK_INDEX))])


def stored_config(stored: dict[str, Any], optimizers: Any) -> Any:
    """An EdgeConfig of the shard's stored vectors (its edge_config.json) with other optimizer settings: given to
    EdgeShard.load, it rewrites them; unspecified settings keep their stored values."""
    import qdrant_edge as qe

    vectors = {
        name: qe.EdgeVectorParams(size=v["size"], distance=getattr(qe.Distance, v["distance"]))
        for name, v in stored["vectors"].items()
    }
    sparse = {
        name: qe.EdgeSparseVectorParams(
            modifier=getattr(qe.Modifier, v["modifier"].capitalize()) if v.get("modifier") else None
        )
        for name, v in (stored.get("sparse_vectors") or {}).items()
    }
    return qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse or None, optimizers=optimizers)
