"""The embedded Bolt server as a Serve deployment: one replica owns the data folder."""
from __future__ import annotations

import logging

from ray import serve

from deployments.config import GraphConfig
from deployments.graph.bolt_server import BoltServerError, EmbeddedBoltServer
from deployments.observability import configure_logging

log = logging.getLogger("graphrag.bolt_server")


@serve.deployment
class BoltServer:
    """Owns the embedded Bolt server child: one replica, restarted by Serve when the child dies."""

    def __init__(self, config: GraphConfig):
        configure_logging()
        self.server = EmbeddedBoltServer(config)
        self.server.start()

    async def info(self) -> dict:
        return {"uri": self.server.uri, "pid": self.server.pid}

    def check_health(self) -> None:
        if not self.server.alive():
            raise BoltServerError(f"the embedded Bolt server (pid {self.server.pid}) died; output:\n{self.server.output_tail(10)}")

    def __del__(self):
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()

