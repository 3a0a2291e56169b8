import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError

from deployments.errors import StageUnavailable
from deployments.graph.embedded.deployment import BoltServer
from deployments.graph.embedded.server import BoltServerError, EmbeddedBoltServer
from deployments.graph.service import GraphService
from deployments.graph.store.credentials import credentials_path, load_or_create
from deployments.models import Chunk
from tests.arcadedb_fixture import make_graph_config

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

        # The passwords never reach the child's command line or environment.
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{server.pid}/environ").read_bytes()
        for secret in (server.credentials.root_password, server.credentials.reader_password):
            assert secret.encode() not in cmdline and secret.encode() not in environ
        assert b"deployments.graph.embedded.server" in cmdline

        # Bolt listens on loopback only.
        addresses = listening_addresses(config.embedded_port)
        assert addresses and addresses <= LOOPBACK

        # The schema exists (created over Bolt at start), and data written through it persists a restart.
        with GraphDatabase.driver(server.uri, auth=server.credentials.root) as driver:
            records, _, _ = driver.execute_query("SHOW CONSTRAINTS", database_="graphrag")
            assert {"entity_key", "chunk_id"} <= {r["name"] for r in records}
        # As in the app: the stage's config has no URI or password; it reads the data folder's credentials.
        graph = GraphService(config, server.uri)
        await graph.upsert("c", [Chunk(chunk_id="d#0", doc_id="d", index=0, text="Alice Smith met Bob Jones.")])
        assert "ArcadeDB" in await graph.ping()
        assert (await graph.query("MATCH (e:Entity) RETURN count(e) AS n")).rows == [[2]]  # as the read-only user

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

    finally:
        server.stop()


def test_child_exits_when_its_parent_dies(tmp_path):
    config = make_graph_config(tmp_path / "graph")
    script = textwrap.dedent("""
        import sys, time
        from deployments.graph.embedded.server import EmbeddedBoltServer
        from deployments.config import GraphConfig
        server = EmbeddedBoltServer(GraphConfig.model_validate_json(sys.stdin.read()))
        server.start()
        print(server.pid, flush=True)
        time.sleep(600)
    """)
    dump = config.model_dump_json()
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
    server = EmbeddedBoltServer(make_graph_config(tmp_path / "graph"), heap="not-a-size")
    with pytest.raises(BoltServerError, match="exited with code") as info:
        server.start()
    assert "not-a-size" in str(info.value)  # the child's own words
    assert not server.alive()


def test_embedded_server_refuses_non_loopback_and_non_root(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        EmbeddedBoltServer(make_graph_config(tmp_path, embedded_host="0.0.0.0"))
    with pytest.raises(ValueError, match="root"):
        EmbeddedBoltServer(make_graph_config(tmp_path, user="neo4j"))


def test_the_deployment_picks_the_port_and_keeps_it_across_restarts(tmp_path):
    from deployments.config import AppConfig
    from deployments.graph.embedded.deployment import PORT_FILE, server_port
    from deployments.net import free_port

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


def listening_ports(pid: int) -> set[int]:
    """Ports of the LISTEN sockets process `pid` holds (its socket inodes matched in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_store_passwords_are_random_per_folder_and_bolt_is_the_only_listener(tmp_path):
    """Issue 10, finding 4: no store password in the source; ArcadeDB's HTTP API (SQL, scripts) is not served."""
    config = make_graph_config(tmp_path / "graph")
    assert config.password is None  # nothing to ship: the embedded server's passwords are made per folder
    server = EmbeddedBoltServer(config)
    try:
        server.start()
        path = credentials_path(config.path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        creds = server.credentials
        assert (
            min(len(creds.root_password), len(creds.reader_password)) >= 32
            and creds.root_password != creds.reader_password
        )
        assert load_or_create(tmp_path / "another").root_password != creds.root_password

        assert listening_ports(server.pid) == {config.embedded_port}  # Bolt only: no HTTP listener
        with GraphDatabase.driver(server.uri, auth=creds.root) as driver:
            driver.verify_connectivity()
        for guess in ("graphrag-embedded", creds.reader_password):  # the old shipped default; another user's
            with GraphDatabase.driver(server.uri, auth=("root", guess)) as driver:
                with pytest.raises(AuthError):
                    driver.verify_connectivity()
        server.stop()

        # Never logged or written anywhere else in the folder (ArcadeDB keeps salted hashes).
        for file in Path(config.path).rglob("*"):
            if file.is_file() and file != path:
                data = file.read_bytes()
                assert creds.root_password.encode() not in data and creds.reader_password.encode() not in data, file

        # Passwords are (re)set from the file at every start: a folder whose store knows other ones (made by an
        # older version, or rotated by rewriting the file) serves the file's.
        path.write_text(json.dumps({"root": "rotated-root-password", "reader": "rotated-reader-password"}))
        server = EmbeddedBoltServer(config)
        server.start()
        with GraphDatabase.driver(server.uri, auth=("root", "rotated-root-password")) as driver:
            driver.verify_connectivity()
        with GraphDatabase.driver(server.uri, auth=creds.root) as driver:
            with pytest.raises(AuthError):
                driver.verify_connectivity()
    finally:
        server.stop()
