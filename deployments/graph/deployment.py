"""The graph stage as a Serve deployment over GraphService."""
from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import GraphConfig
from deployments.graph.service import GraphService
from deployments.observability import configure_logging

# ---- the Serve deployment ----------------------------------------------------------------------


@serve.deployment
class Graph(GraphService):
    """The graph stage. `uri` is the Bolt URI (AppConfig.bolt_uri); without it, `bolt` (the BoltServer
    deployment) is asked once, lazily, for the URI of the server it runs."""

    def __init__(self, config: GraphConfig, uri: str | None = None, bolt: DeploymentHandle | None = None):
        configure_logging()
        if uri is None and config.bolt_uri:
            uri = config.bolt_uri
        if uri is None:
            if bolt is None:
                raise ValueError("Graph needs a Bolt URI or the BoltServer deployment handle")

            async def ask_bolt() -> str:
                return (await bolt.info.remote())["uri"]

            super().__init__(config, ask_bolt)
        else:
            super().__init__(config, uri)

    async def __del__(self) -> None:  # Serve awaits an async __del__ on replica shutdown
        await self.aclose()
