"""What a start finds left over from a crash (issue 21), without Ray: an HAProxy of ours still on the HTTP port is
stopped, any other holder is named; a Bolt server still owning the data folder is stopped; HAProxy dies with its
parent."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from neo4j import GraphDatabase

from deployments.graph.embedded.server import EmbeddedBoltServer
from deployments.lifetime import (
    PortTaken,
    alive,
    claim_port,
    haproxy_pid_file,
    listener_pids,
    orphaned_haproxy,
)
from deployments.net import free_port
from deployments.throughput import bundled_haproxy
from tests.arcadedb_fixture import make_graph_config


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


def wait_listening(port: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not listener_pids(port):
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.05)


@pytest.fixture
def stray_haproxy(tmp_path):
    """The real HAProxy binary listening on a free port, not a child of a Serve HAProxy manager, named by the port's
    pid file: what a crash of an older version left behind."""
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        textwrap.dedent(f"""\
        defaults
            mode http
            timeout connect 1s
            timeout client 1s
            timeout server 1s
        frontend http_frontend
            bind 127.0.0.1:{port}
            http-request return status 500
        """)
    )
    proc = subprocess.Popen(
        [bundled_haproxy(), "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pid_file = haproxy_pid_file(port)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{proc.pid}\n")
    try:
        wait_listening(port)
        yield port, proc
    finally:
        proc.kill()
        proc.wait(5)
        pid_file.unlink(missing_ok=True)


def test_a_start_stops_an_haproxy_of_ours_left_on_its_port(stray_haproxy, capsys):
    port, proc = stray_haproxy
    assert orphaned_haproxy(port) == proc.pid
    claim_port("127.0.0.1", port)
    assert proc.wait(10) is not None
    assert not listener_pids(port)
    assert f"HAProxy pid {proc.pid}" in capsys.readouterr().out


def test_a_port_held_by_anything_else_is_refused_naming_the_holder():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortTaken, match=rf"127.0.0.1:{port} is in use by pid {os.getpid()} "):
            claim_port("127.0.0.1", port)
        assert orphaned_haproxy(port) is None  # no pid file names us: never ours to stop


def test_an_haproxy_whose_pid_file_names_another_process_is_left_alone(stray_haproxy):
    port, proc = stray_haproxy
    haproxy_pid_file(port).write_text("1\n")
    with pytest.raises(PortTaken, match=f"pid {proc.pid}"):
        claim_port("127.0.0.1", port)
    assert proc.poll() is None


def test_haproxy_started_through_the_wrapper_dies_with_its_parent(tmp_path):
    """graphrag-haproxy sets the parent-death signal: a parent killed with SIGKILL takes HAProxy with it."""
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        f"defaults\n    mode http\n    timeout client 1s\n    timeout connect 1s\n    timeout server 1s\n"
        f"frontend http_frontend\n    bind 127.0.0.1:{port}\n    http-request return status 200\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""\
        import subprocess, sys, time
        from deployments.throughput import haproxy_main
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.argv = ['graphrag-haproxy', '-db', '-f', {str(config)!r}]; from deployments.throughput import haproxy_main; haproxy_main()"])
        print(child.pid, flush=True)
        time.sleep(600)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        haproxy = int(parent.stdout.readline())
        wait_listening(port)
        assert listener_pids(port) == [haproxy]
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert wait_gone(haproxy, 5), "HAProxy outlived its parent"
        assert not listener_pids(port)
    finally:
        parent.kill()
        haproxy_pid_file(port).unlink(missing_ok=True)


def test_a_bolt_server_left_on_the_data_folder_is_stopped_and_replaced(tmp_path, caplog):
    config = make_graph_config(tmp_path / "graph")
    first = EmbeddedBoltServer(config)
    first.start()
    leftover = first.pid
    first._proc = None  # its owner is gone without stopping it (a replica killed with SIGKILL, pid file kept)
    second = EmbeddedBoltServer(config)
    try:
        with caplog.at_level(logging.WARNING, logger="graphrag.bolt_server"):
            second.start()
        assert f"pid {leftover} of an earlier run still owns" in caplog.text
        assert wait_gone(leftover, 5)
        with GraphDatabase.driver(second.uri, auth=second.credentials.root) as driver:
            records, _, _ = driver.execute_query("RETURN 1 AS ok", database_=second.database)
        assert records[0]["ok"] == 1
    finally:
        second.stop()
        if alive(leftover):
            os.kill(leftover, signal.SIGKILL)
    assert not (tmp_path / "graph" / "bolt-server.pid").exists()


def test_the_exported_hook_is_what_ray_loads():
    from ray._common.utils import load_class

    from deployments.lifetime import hook_env, runtime_env_hook

    assert load_class(hook_env()["RAY_RUNTIME_ENV_HOOK"]) is runtime_env_hook


def test_a_repeated_sigterm_does_not_cut_the_orderly_stop_short():
    """`make demo` stopped by SIGTERM to its group: make forwards the signal to its child, so the driver gets two.
    The second must not abort the stop the first started (Serve's drain, then Ray); a second Ctrl-C still does."""
    driver = textwrap.dedent("""
        import sys, time
        from deployments.lifetime import stop_on_signals
        stop_on_signals()
        try:
            print("ready", flush=True)
            time.sleep(30)
        except KeyboardInterrupt:
            pass
        finally:
            print("stopping", flush=True)
            sys.stdin.readline()  # serve.shutdown(), ray.shutdown(): done when the test says so, after the second signal
            print("stopped", flush=True)
    """)
    for second, finished in ((signal.SIGTERM, True), (signal.SIGINT, False)):
        proc = subprocess.Popen(
            [sys.executable, "-c", driver],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline().strip() == "stopping"
        proc.send_signal(second)
        out = proc.communicate("\n", timeout=20)[0]
        assert ("stopped" in out) is finished, f"after SIGTERM then {second.name}: {out!r}"
