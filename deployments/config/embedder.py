"""The `embedder` section: the query/passage embedding model and where it runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from deployments.config.section import BreakerConfig, Section


class EmbedderConfig(Section):
    model_name: str = "all-MiniLM-L6-v2"
    # In-process runtime of the local weights: ONNX Runtime (exported from the weights at first start, cached in
    # `cache_dir`; 2-3x the questions/s of torch at the same vectors, README "Performance") or torch itself.
    backend: Literal["onnx", "torch"] = "onnx"
    cache_dir: str | None = None  # default: <data_dir>/models
    onnx_allow_spinning: bool = Field(
        False, description="ONNX Runtime threads spin while idle (a core each, even when other processes need it)."
    )
    # An OpenAI-compatible /v1/embeddings endpoint replaces the in-process model when set.
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_model: str = "text-embedding-3-small"
    max_batch_size: int = Field(
        64, ge=1, le=4096, description="Texts per model call (the embedder batches concurrent calls up to this)."
    )
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=5)
    num_threads: int | None = Field(
        None, ge=1, le=64, description="torch / ONNX Runtime intra-op threads; default: the CPUs this process may use."
    )
    timeout_s: float = Field(30.0, gt=0, description="Per-request timeout of the OpenAI-compatible endpoint.")
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed request to the OpenAI-compatible endpoint."
    )
    breaker: BreakerConfig = BreakerConfig()  # the OpenAI-compatible endpoint's
