"""The `limits` section: request size and whole-request time bounds."""

from __future__ import annotations

from pydantic import Field

from deployments.config.section import Section


class LimitsConfig(Section):
    # 64 MiB admits the largest valid ingest (256 documents of 200,000 characters).
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    request_timeout_s: float = Field(
        120.0, gt=0, description="Whole-request bound; the graph is cancelled and 504 returned."
    )
    ingest_request_timeout_s: float = Field(660.0, gt=0, description="The same bound for POST /v1/ingest.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 503s of an unavailable or overloaded stage.")
