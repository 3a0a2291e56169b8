"""The embedded Bolt server as a Serve deployment: one replica owns the data folder, picks the port and reports it."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from ray import serve

from deployments.config import GraphConfig
from deployments.graph.embedded.server import BoltServerError, EmbeddedBoltServer
from deployments.net import free_port
from deployments.observability import configure_logging

log = logging.getLogger("graphrag.bolt_server")

PORT_FILE = "bolt.port"  # in the data folder: the port its server listened on last


def _can_bind(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def server_port(config: GraphConfig) -> int:
    """`graph.embedded_port`, else the port this data folder's server used last (a replica Serve restarts keeps
    its URI, which the Graph replicas asked for once), else a free one, remembered for the next start."""
    if config.embedded_port:
        return config.embedded_port
    if not config.path:
        raise ValueError("graph.path (the embedded server's data folder) is not set")
    remembered = Path(config.path) / PORT_FILE
    try:
        port = int(remembered.read_text())
        if _can_bind(config.embedded_host, port):
            return port
        log.warning("port %d of the last embedded Bolt server is taken: picking another one", port)
    except (OSError, ValueError):
        pass
    port = free_port(config.embedded_host)
    remembered.parent.mkdir(parents=True, exist_ok=True)
    remembered.write_text(str(port))
    return port


@serve.deployment
class BoltServer:
    """Owns the embedded Bolt server child: one replica, restarted by Serve when the child dies."""

    def __init__(self, config: GraphConfig):
        configure_logging()
        self.server = EmbeddedBoltServer(config.model_copy(update={"embedded_port": server_port(config)}))
        self.server.start()

    async def info(self) -> dict:
        return {"uri": self.server.uri, "pid": self.server.pid}

    def check_health(self) -> None:
        if not self.server.alive():
            raise BoltServerError(
                f"the embedded Bolt server (pid {self.server.pid}) died; output:\n{self.server.output_tail(10)}"
            )

    def __del__(self):
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()
