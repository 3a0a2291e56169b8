"""OpenAI-compatible `POST /v1/embeddings`: the Embedder deployment's vectors (the model the collections are
embedded with), for clients that must embed with the server's model. OpenAI's wire shapes, like openai_api.py.

The official client asks for base64 unless told otherwise (and decodes it): both encodings are served.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.config import EmbedderConfig

MAX_EMBEDDING_INPUTS = 2048  # OpenAI's bound on one request's inputs
MAX_EMBEDDING_INPUT_CHARS = 50_000


class EmbeddingRequest(BaseModel):
    # Unknown OpenAI parameters (user, ...) are accepted and ignored, as compatible servers do.
    model_config = ConfigDict(extra="allow", strict=True)

    input: str | list[str] = Field(description="One text or a list of texts (not token arrays).")
    model: str = Field(
        min_length=1, max_length=256, description="The served embedding model (GET /v1/models lists it)."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Only the model's own dimension is served.")

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        if isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            raise ValueError(
                "input must be a string or a list of strings: token arrays are not accepted (the server tokenizes with its own model)"
            )
        return value

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("input must not be an empty list")
        if len(texts) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request, got {len(texts)}")
        for i, text in enumerate(texts):
            if not text.strip():
                raise ValueError(f"input[{i}] must not be empty or only white space")
            if len(text) > MAX_EMBEDDING_INPUT_CHARS:
                raise ValueError(f"input[{i}] is longer than {MAX_EMBEDDING_INPUT_CHARS} characters")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(
        description="Floats, or with encoding_format=base64 little-endian float32 bytes."
    )


class EmbeddingUsage(BaseModel):
    prompt_tokens: int = Field(
        description="The model's tokens in the inputs (after its truncation); 0 when the backend is a remote endpoint."
    )
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def served_model(config: EmbedderConfig) -> str:
    """The embedding model's name as the API shows it: the remote endpoint's model, else the local weights'."""
    return config.openai_model if config.openai_base_url else config.model_name


def is_served_model(requested: str, config: EmbedderConfig) -> bool:
    """`requested` names the served model, with or without an organisation prefix (sentence-transformers/...)."""
    return requested.rsplit("/", 1)[-1] == served_model(config).rsplit("/", 1)[-1]


def embedding_list(vectors: list[list[float]], model: str, tokens: int | None, encoding: str) -> EmbeddingList:
    def encoded(vector: list[float]) -> list[float] | str:
        if encoding == "base64":
            return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        return vector

    return EmbeddingList(
        data=[Embedding(index=i, embedding=encoded(v)) for i, v in enumerate(vectors)],
        model=model,
        usage=EmbeddingUsage(prompt_tokens=tokens or 0, total_tokens=tokens or 0),
    )
