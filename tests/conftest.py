import os

# Loopback-only Ray, no auth prompts, no hub downloads: set before anything imports Ray or transformers.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# One real ArcadeDB Bolt server per test session, shared by every module that asks for it.
from tests.arcadedb_fixture import arcadedb_server, bolt_uri, graph_config  # noqa: E402,F401
