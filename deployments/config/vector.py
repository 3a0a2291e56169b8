"""The `vector` section: the Qdrant store (a server, or the embedded engine) and its BM25 weights."""

from __future__ import annotations

from pydantic import Field, SecretStr

from deployments.config.section import Section


class VectorConfig(Section):
    # Qdrant server URL; when unset the embedded engine (qdrant-edge-py) stores under `path`.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    path: str | None = None  # default: <data_dir>/qdrant
    timeout_s: float = Field(10.0, gt=0)
    embed_batch_size: int = Field(256, ge=1, description="Chunk texts per embed call when upserting.")
    hit_vectors: bool | None = Field(
        None,
        description="Searches return their hits' stored vectors (for the embedded reranker); default: on when no reranker.url is set.",
    )
    optimize_every_points: int = Field(
        1024, ge=1, description="Embedded store: run the optimizer (HNSW build, vacuum) after this many written points."
    )
    segments: int = Field(
        8,
        ge=1,
        description="Embedded store: the segments its optimizer keeps a collection in (Qdrant's default_segment_number).",
    )
    # Qdrant Edge writes through memory-mapped files: a write that finds the disk full kills the process (SIGBUS)
    # instead of failing. So ingests are refused (507) while the data folder has less room than this; make it
    # larger than the largest ingest request's growth.
    min_free_disk_mb: int = Field(
        256, ge=0, description="Ingests answer 507 while the data folder's disk has less free space (MB)."
    )
    # BM25 document weights, written at ingest (changing them affects documents ingested afterwards only).
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    bm25_avg_len: float = Field(256.0, gt=0, description="Expected document length in terms (after stop words).")

    @property
    def embedded(self) -> bool:
        return not self.qdrant_url
