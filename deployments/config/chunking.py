"""The `chunking` section: how ingested documents are cut into passages."""

from __future__ import annotations

from pydantic import Field, model_validator

from deployments.config.section import Section


class ChunkingConfig(Section):
    max_words: int = Field(160, ge=16, le=2000)
    overlap_words: int = Field(30, ge=0)

    @model_validator(mode="after")
    def _overlap(self) -> ChunkingConfig:
        if self.overlap_words >= self.max_words:
            raise ValueError("chunking.overlap_words must be smaller than chunking.max_words")
        return self
