"""The one typed config: every setting of the app, validated once when the app is built.

Values come from `build_app` args (Serve YAML `args:` or `serve run graph:build_app key=value`, dotted
keys for nesting), then from `GRAPHRAG_*` environment variables (nested with `__`, e.g.
`GRAPHRAG_VECTOR__QDRANT_URL`), then from each section's defaults. Secrets are `SecretStr`: never logged.

One module a section (`embedder`, `vector`, `graph` and its `extraction`, `reranker`, `chat`, `retrieval`,
`chunking`, `limits`; `deployments` and `auth` live in serve_options.py and auth_config.py), put together in
`app.py`. Import from here: `from deployments.config import AppConfig, GraphConfig, ...`.
"""

from deployments.config.app import MOVED_KEYS, AppConfig, nest_dotted
from deployments.config.chat import ChatConfig, ChatProvider
from deployments.config.chunking import ChunkingConfig
from deployments.config.embedder import EmbedderConfig
from deployments.config.extraction import DEFAULT_ENTITY_TYPES, ExtractionConfig, ExtractionProvider
from deployments.config.graph import GraphConfig, GraphIndexConfig
from deployments.config.limits import LimitsConfig
from deployments.config.reranker import RerankerConfig
from deployments.config.retrieval import FusionWeights, RetrievalConfig
from deployments.config.section import BreakerConfig, Section
from deployments.config.vector import VectorConfig
from deployments.serve_options import DeploymentsConfig

__all__ = [
    "DEFAULT_ENTITY_TYPES",
    "MOVED_KEYS",
    "AppConfig",
    "BreakerConfig",
    "ChatConfig",
    "ChatProvider",
    "ChunkingConfig",
    "DeploymentsConfig",
    "EmbedderConfig",
    "ExtractionConfig",
    "ExtractionProvider",
    "FusionWeights",
    "GraphConfig",
    "GraphIndexConfig",
    "LimitsConfig",
    "RerankerConfig",
    "RetrievalConfig",
    "Section",
    "VectorConfig",
    "nest_dotted",
]
