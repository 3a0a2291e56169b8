"""The graph stage as a Serve deployment over GraphService."""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import GraphConfig
from deployments.graph.passages import StagePassages
from deployments.graph.service import GraphService
from deployments.handles import Remote
from deployments.observability import configure_logging


@serve.deployment
class Graph(GraphService):
    """The graph stage. Its Bolt URI is `graph.bolt_uri` (Neo4j), else the one the embedded Bolt server
    deployment (`bolt`) reports, asked once when the replica starts."""

    async def __init__(  # type: ignore[misc]  # Serve awaits an async __init__
        self,
        config: GraphConfig,
        bolt: DeploymentHandle | None = None,
        vector: DeploymentHandle | None = None,
    ):
        configure_logging()
        if config.bolt_uri:
            uri = config.bolt_uri
        elif bolt is not None:
            uri = (await Remote(bolt).info())["uri"]
        else:
            raise ValueError("Graph needs graph.bolt_uri or the BoltServer deployment's handle")
        # The in-memory index seeds its walk with the Vector stage's nearest passages to the query's vector (sent
        # by the ingress with each search); it holds no passage vectors itself.
        super().__init__(config, uri, passages=StagePassages(Remote(vector)) if vector is not None else None)
        warming = self.start_warming()
        if warming is not None and config.index.warm_before_serving:
            await warming  # logs and swallows a failed build: the first search then builds again

    async def __del__(self) -> None:  # Serve awaits an async __del__ on replica shutdown
        await self.aclose()
