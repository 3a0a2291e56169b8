"""A one-chunk document's graph as a client sends it (`Document.extraction`: the cluster bulk path's workers,
deployments/bulk/). Re-exported by `deployments.models`."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from deployments.models.base import Strict
from deployments.models.messages import Entity, Extraction, Relation
from deployments.text import normalize_name

MAX_CHUNK_ENTITIES = 500  # entities and relations a document may bring for its one chunk (Document.extraction)
MAX_CHUNK_RELATIONS = 2_000
MAX_ENTITY_NAME_CHARS = 1_000

# Entity and relation types are data in the graph (never labels); the extractors' types look like this.
_GRAPH_TYPE = r"^[A-Z][A-Z0-9_]{0,63}$"


def _entity_key(value: str) -> str:
    if not value or normalize_name(value) != value:
        raise ValueError(f"entity key {value!r} is not a linking key (deployments.text.normalize_name of a name)")
    return value


class ChunkEntity(Strict):
    key: str = Field(max_length=MAX_ENTITY_NAME_CHARS, description="The linking key: normalize_name(name).")
    name: str = Field(min_length=1, max_length=MAX_ENTITY_NAME_CHARS)
    type: str = Field(pattern=_GRAPH_TYPE)
    lead: bool = Field(False, description="Named in the chunk's first sentence: what the chunk is about.")
    aliases: list[str] = Field(default_factory=list, max_length=20, description="Keys of its other names here.")

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return _entity_key(v)

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, v: list[str]) -> list[str]:
        return [_entity_key(a) for a in v]


class ChunkRelation(Strict):
    source: str = Field(min_length=1, max_length=MAX_ENTITY_NAME_CHARS, description="An entity key of the chunk.")
    target: str = Field(min_length=1, max_length=MAX_ENTITY_NAME_CHARS)
    type: str = Field(pattern=_GRAPH_TYPE)
    weight: float = Field(1.0, gt=0, allow_inf_nan=False)


class ChunkExtraction(Strict):
    """A one-chunk document's graph, extracted by the caller (the cluster bulk path, deployments/bulk/), stored as
    the graph stage's own extraction would be. Its entities' keys are unique; a relation joins two of them."""

    entities: list[ChunkEntity] = Field(default_factory=list, max_length=MAX_CHUNK_ENTITIES)
    relations: list[ChunkRelation] = Field(default_factory=list, max_length=MAX_CHUNK_RELATIONS)
    extractor: str = Field(
        "client", pattern=r"^[A-Za-z0-9_.:@/-]{1,64}$", description="Who extracted it (IngestResponse.extractors)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ChunkExtraction:
        keys = [e.key for e in self.entities]
        if len(set(keys)) != len(keys):
            raise ValueError("entity keys must be unique within a chunk")
        known = set(keys)
        for r in self.relations:
            if r.source not in known or r.target not in known or r.source == r.target:
                raise ValueError(
                    f"relation {r.source!r} -{r.type}-> {r.target!r} must join two of the chunk's entities"
                )
        return self

    def to_extraction(self, chunk_id: str) -> Extraction:
        return Extraction(
            chunk_id=chunk_id,
            entities=[Entity(**e.model_dump()) for e in self.entities],
            relations=[Relation(**r.model_dump()) for r in self.relations],
            extractor=self.extractor,
        )

    @classmethod
    def of(cls, extraction: Extraction) -> ChunkExtraction:
        """The wire form of an extractor's result (what the bulk path's workers send)."""
        return cls(
            entities=[ChunkEntity(**e.model_dump()) for e in extraction.entities],
            relations=[ChunkRelation(**r.model_dump()) for r in extraction.relations],
            extractor=extraction.extractor,
        )
