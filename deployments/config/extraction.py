"""The `graph.extraction` section: the LLM providers that extract entities and relations, and the offline fallback."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator

from deployments.config.section import Section
from deployments.graph.extraction.ontology import ENTITY_TYPES


class ExtractionProvider(Section):
    """One OpenAI-compatible chat endpoint that extracts entities and relations as JSON."""

    name: str | None = Field(None, description="Shown in results and logs; default: model@host.")
    base_url: str  # ".../v1"
    api_key: SecretStr | None = None
    model: str
    timeout_s: float = Field(60.0, gt=0, description="Bound on one provider's attempt (repair included).")
    json_mode: bool = Field(True, description='Send response_format={"type": "json_object"}.')

    @property
    def label(self) -> str:
        return self.name or f"{self.model}@{urlparse(self.base_url).netloc or self.base_url}"


# Entity types the LLM may use: the offline extractors' (graph/extraction/ontology.py, the graph schema); anything
# else is normalized to one of them (or to the last, OTHER).
DEFAULT_ENTITY_TYPES = list(ENTITY_TYPES)


class ExtractionConfig(Section):
    """LLM extraction: the providers race per chunk, the first valid result wins. No provider: offline extraction."""

    providers: list[ExtractionProvider] = Field(default_factory=list)
    # spaCy by default: typed entities and relations on prose (HotpotQA) and, with the technical-name rules
    # (graph/extraction/technical.py), on documentation such as the sample corpus. Figures: benchmarks/README.md.
    offline: Literal["spacy", "patterns"] = Field(
        "spacy",
        description="The extractor without an LLM (and the LLM race's fallback): spaCy en_core_web_sm (typed "
        "entities, relations from the parse, technical names typed TECH) or the capitalization patterns (no model; "
        "CO_OCCURS only).",
    )
    max_concurrent_providers: int = Field(3, ge=1, le=16, description="Providers in flight at once for one chunk.")
    max_concurrent_chunks: int = Field(4, ge=1, le=64, description="Chunks extracted at once by one graph replica.")
    min_entities: int = Field(1, ge=0, description="A result with fewer entities (after normalization) is a failure.")
    min_relations: int = Field(0, ge=0)
    entity_types: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITY_TYPES), min_length=1)
    max_entities: int = Field(40, ge=1, le=500, description="Per chunk; the rest are dropped.")
    max_relations: int = Field(80, ge=0, le=2000)
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(2048, ge=64)
    fallback_offline: bool = Field(
        True, description="When every provider fails: offline extraction (else the ingest fails)."
    )

    @field_validator("entity_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        for t in v:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,31}", t):
                raise ValueError(f"entity type {t!r} must match [A-Z][A-Z0-9_]{{0,31}}")
        return v
