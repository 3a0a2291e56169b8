import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.arcadedb_fixture import TEST_PASSWORD, make_graph_config
from neo4j import GraphDatabase
from pydantic import SecretStr

from deployments.graph.bolt_deployment import BoltServer
from deployments.graph.bolt_server import BoltServerError, EmbeddedBoltServer
from deployments.errors import StageUnavailable
from deployments.graph.service import GraphService
from deployments.models import Chunk

PROJECT = Path(__file__).resolve().parents[2]


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on `port`, from /proc/net/tcp{,6} (hex, as the kernel writes them)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited; only its parent has not reaped it yet


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


async def test_lifecycle_health_stop_and_restart(tmp_path):
    config = make_graph_config(tmp_path / "graph")
    deployment = BoltServer.func_or_class(config)  # the Serve deployment's class, run without Ray
    server = deployment.server
    try:
        info = await deployment.info()
        assert info == {"uri": f"bolt://127.0.0.1:{config.embedded_port}", "pid": server.pid}
        assert server.alive()
        deployment.check_health()

        # The password never reaches the child's command line or environment.
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{server.pid}/environ").read_bytes()
        assert TEST_PASSWORD.encode() not in cmdline and TEST_PASSWORD.encode() not in environ
        assert b"deployments.graph.bolt_server" in cmdline

        # Bolt listens on loopback only.
        addresses = listening_addresses(config.embedded_port)
        assert addresses and addresses <= LOOPBACK

        # The schema exists (created over Bolt at start), and data written through it persists a restart.
        with GraphDatabase.driver(server.uri, auth=("root", TEST_PASSWORD)) as driver:
            records, _, _ = driver.execute_query("SHOW CONSTRAINTS", database_="graphrag")
            assert {"entity_key", "chunk_id"} <= {r["name"] for r in records}
        graph = GraphService(config.model_copy(update={"bolt_uri": server.uri}), server.uri)
        await graph.upsert("c", [Chunk(chunk_id="d#0", doc_id="d", index=0, text="Alice Smith met Bob Jones.")])
        assert "ArcadeDB" in await graph.ping()

        # The child dies: the health check says so, and the graph stage raises a clear error, not an empty result.
        os.kill(server.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server.alive() and time.monotonic() < deadline:  # alive() reaps it once all its threads are gone
            time.sleep(0.1)
        with pytest.raises(BoltServerError, match="died"):
            deployment.check_health()
        with pytest.raises(StageUnavailable, match="cannot reach bolt://127.0.0.1"):
            await graph.counts("c")
        with pytest.raises(StageUnavailable):
            await graph.search("c", "Alice Smith", 1, 5)

        # A new child on the same folder (the lock died with its owner) serves the same data; the
        # service's driver reconnects by itself.
        server.start()
        assert await graph.counts("c") == {"chunks": 1, "entities": 2, "relations": 1}
        await graph.aclose()

        pid = server.pid
        deployment.__del__()  # what Serve calls at replica shutdown
        assert not server.alive() and wait_gone(pid, 1)
        assert "ArcadeDB Server is down" in server.output_tail()  # SIGTERM stopped ArcadeDB cleanly

        # The folder keeps the root password it was created with: another one is a clear error, fast.
        wrong = EmbeddedBoltServer(config.model_copy(update={"password": SecretStr("another-password")}))
        with pytest.raises(BoltServerError, match="refused the configured password"):
            wrong.start()
        assert not wrong.alive()
    finally:
        server.stop()


def test_child_exits_when_its_parent_dies(tmp_path):
    config = make_graph_config(tmp_path / "graph")
    script = textwrap.dedent("""
        import sys, time
        from deployments.graph.bolt_server import EmbeddedBoltServer
        from deployments.config import GraphConfig
        server = EmbeddedBoltServer(GraphConfig.model_validate_json(sys.stdin.read()))
        server.start()
        print(server.pid, flush=True)
        time.sleep(600)
    """)
    dump = config.model_dump_json().replace('"**********"', f'"{TEST_PASSWORD}"')
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=PROJECT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    child_pid = None
    try:
        parent.stdin.write(dump)
        parent.stdin.close()
        child_pid = int(parent.stdout.readline())
        assert running(child_pid)
        parent.kill()  # no cleanup code runs in the parent
        parent.wait(5)
        assert wait_gone(child_pid, 15), "the Bolt server outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if child_pid and not wait_gone(child_pid, 0):
            os.kill(child_pid, signal.SIGKILL)


def test_failed_start_reports_the_child_output(tmp_path):
    server = EmbeddedBoltServer(make_graph_config(tmp_path / "graph", password=SecretStr("short")))
    with pytest.raises(BoltServerError, match="at least 8 characters"):
        server.start()
    assert not server.alive()


def test_embedded_server_refuses_non_loopback_and_non_root(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        EmbeddedBoltServer(make_graph_config(tmp_path, embedded_host="0.0.0.0"))
    with pytest.raises(ValueError, match="root"):
        EmbeddedBoltServer(make_graph_config(tmp_path, user="neo4j"))


def test_the_deployment_picks_the_port_and_keeps_it_across_restarts(tmp_path):
    from deployments.config import AppConfig, free_port
    from deployments.graph.bolt_deployment import PORT_FILE, server_port

    config = AppConfig.from_args({"data_dir": str(tmp_path)}).graph
    assert config.embedded_port == 0  # nothing chosen (nor bound) while the config was validated
    port = server_port(config)
    assert port > 0 and (Path(config.path) / PORT_FILE).read_text() == str(port)
    assert server_port(config) == port  # a restarted replica listens where the Graph replicas already connect
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert server_port(config) != port  # unless something else holds it now
    fixed = free_port()
    assert server_port(config.model_copy(update={"embedded_port": fixed})) == fixed
