"""The embedded Neo4j-protocol graph store: ArcadeDB (a JVM, via arcadedb-embedded) serving Bolt on loopback,
run in a child process that owns the data folder and dies with its parent.

Run alone: `python -m deployments.graph.bolt_server --host 127.0.0.1 --port 7687 --data DIR` with the root password
on standard input (its first line), never on the command line.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from deployments.config import GraphConfig, _require_loopback, free_port

log = logging.getLogger("graphrag.bolt_server")

DEFAULT_DATABASE = "graphrag"
DEFAULT_HEAP = "1g"
READY_LINE = "BOLT-SERVER-READY"
# ArcadeDB refuses shorter root passwords.
MIN_PASSWORD_CHARS = 8
_PROJECT_ROOT = Path(__file__).resolve().parents[2]




class BoltServerError(RuntimeError):
    """The embedded Bolt server could not be started or died."""


# ---- the child process -------------------------------------------------------------------------


def _serve(args: argparse.Namespace, password: str) -> int:
    """Runs ArcadeDB with the Bolt plugin until SIGTERM/SIGINT or the parent's death; returns the exit code."""
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    # ArcadeDB writes its application log to ./log of the working directory: keep it in the data folder.
    os.chdir(data)

    import arcadedb_embedded as arcadedb  # noqa: PLC0415 - the JVM starts only in the child

    arcadedb.jvm.start_jvm(heap_size=args.heap)
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    # Installed after the JVM started, so Python (not the JVM's shutdown hooks) decides how to stop:
    # the server is stopped and its databases closed cleanly before the process ends.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watchdog() -> None:
        # A parent that died (even by SIGKILL) reparents this process: stop, so the data folder's lock
        # never outlives its owner.
        while not stop.wait(0.5):
            if os.getppid() != args.parent_pid:
                print("parent process is gone; stopping", file=sys.stderr, flush=True)
                stop.set()

    if args.parent_pid:
        threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()

    config = {
        "host": args.host,  # every listener: HTTP, Bolt (and the auto-discovered MCP endpoint on HTTP)
        "http_port": args.http_port or free_port(args.host),
        "server_plugins": "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
        "bolt_port": args.port,
        "bolt_host": args.host,
        "bolt_defaultDatabase": args.database,
        "server_logsDirectory": str(data / "log"),
    }
    # A replica restarted by Serve may find the previous owner still releasing the port or the folder's
    # lock for a moment: retry the start until the deadline.
    deadline = time.monotonic() + args.start_retry_s
    while True:
        server = arcadedb.create_server(str(data), password, config=config)
        try:
            server.start()
            break
        except Exception as exc:  # noqa: BLE001 - reported below, with the cause
            if stop.is_set() or time.monotonic() >= deadline:
                print(f"ArcadeDB server failed to start: {exc}", file=sys.stderr, flush=True)
                return 1
            print(f"ArcadeDB server start failed, retrying: {exc}", file=sys.stderr, flush=True)
            stop.wait(1.0)
    try:
        try:
            server.get_database(args.database)
        except Exception:  # noqa: BLE001 - not there yet: create it
            server.create_database(args.database)
        print(READY_LINE, flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001
            print(f"ArcadeDB server stop failed: {exc}", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="Bolt port")
    parser.add_argument("--data", required=True, help="data folder (databases, config, logs)")
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--http-port", type=int, default=0, help="ArcadeDB's HTTP API port (always on; 0 = free port)")
    parser.add_argument("--heap", default=DEFAULT_HEAP, help="JVM max heap, e.g. 1g")
    parser.add_argument("--parent-pid", type=int, default=0, help="stop when this process is no longer the parent")
    parser.add_argument("--start-retry-s", type=float, default=20.0)
    args = parser.parse_args(argv)
    _require_loopback(args.host)
    password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD_CHARS:
        print(f"the root password (first line of standard input) needs at least {MIN_PASSWORD_CHARS} characters", file=sys.stderr)
        raise SystemExit(2)
    code = _serve(args, password)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the JVM's own teardown: the server is already stopped and its non-daemon threads could hang exit.
    os._exit(code)


# ---- the parent's handle on the child ----------------------------------------------------------


class EmbeddedBoltServer:
    """Starts and stops the ArcadeDB Bolt server child process for `config` (user must be root)."""

    def __init__(self, config: GraphConfig, heap: str = DEFAULT_HEAP, start_timeout_s: float = 90.0):
        if not config.path:
            raise ValueError("graph.path (the embedded server's data folder) is not set")
        if config.user != "root":
            raise ValueError(f"the embedded ArcadeDB server authenticates its root user; graph.user is {config.user!r}")
        _require_loopback(config.embedded_host)
        self.config = config
        self.host = config.embedded_host
        self.port = config.embedded_port or free_port(self.host)
        self.database = config.database or DEFAULT_DATABASE
        self.data = Path(config.path).expanduser().resolve()
        self.heap = heap
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._log_path = self.data / "bolt-server.out"

    @property
    def uri(self) -> str:
        return f"bolt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Spawns the child, waits until Bolt answers `RETURN 1`, then creates the graph schema."""
        if self.alive():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        cmd = [
            sys.executable, "-m", "deployments.graph.bolt_server",
            "--host", self.host, "--port", str(self.port), "--data", str(self.data),
            "--database", self.database, "--heap", self.heap, "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        if self._log_path.exists():  # keep the last run's output: it may say why that child died
            self._log_path.replace(self._log_path.with_suffix(".out.prev"))
        # Output goes to a file, not a pipe nobody drains (a full pipe would block the JVM's logging).
        with open(self._log_path, "wb") as out:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=str(self.data), start_new_session=True,
            )  # fmt: skip
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(self.config.password.get_secret_value().encode() + b"\n")
            self._proc.stdin.close()
            self._wait_ready()
            self._create_schema()
        except BaseException:
            self.stop()
            raise
        log.info("embedded Bolt server pid %s serving %s (data %s)", self.pid, self.uri, self.data)

    def _wait_ready(self) -> None:
        from neo4j import GraphDatabase  # noqa: PLC0415
        from neo4j.exceptions import AuthError  # noqa: PLC0415

        deadline = time.monotonic() + self.start_timeout_s
        last_error = "not started"
        while time.monotonic() < deadline:
            if not self.alive():
                raise BoltServerError(
                    f"the embedded Bolt server exited with code {self._proc.returncode} before it was ready; "
                    f"its output ends with:\n{self.output_tail()}"
                )
            if _port_open(self.host, self.port) and READY_LINE in self.output_tail(400):
                try:
                    with GraphDatabase.driver(self.uri, auth=self._auth(), connection_timeout=2.0) as driver:
                        records, _, _ = driver.execute_query("RETURN 1 AS ok", database_=self.database)
                        if records and records[0]["ok"] == 1:
                            return
                except AuthError as exc:
                    # Not transient: the data folder was created with another root password.
                    raise BoltServerError(f"the embedded Bolt server at {self.uri} refused the configured password "
                                          f"(the data folder {self.data} keeps the root password it was created with): {exc}") from exc
                except Exception as exc:  # noqa: BLE001 - retried until the deadline
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise BoltServerError(
            f"the embedded Bolt server did not answer at {self.uri} within {self.start_timeout_s:g}s "
            f"(last error: {last_error}); its output ends with:\n{self.output_tail()}"
        )

    def _create_schema(self) -> None:
        # Cypher DDL over Bolt: ArcadeDB 26.10 maps `CREATE INDEX ... IF NOT EXISTS FOR (n:L) ON (n.p)` to its
        # own LSM index (checked with PROFILE: `NodeIndexSeek`), and the same statements work on Neo4j, so the
        # schema is defined once, in graph_store, for the embedded and an external server alike.
        from neo4j import GraphDatabase  # noqa: PLC0415

        from deployments.graph.schema import SCHEMA

        with GraphDatabase.driver(self.uri, auth=self._auth(), connection_timeout=5.0) as driver:
            for statement in SCHEMA:
                driver.execute_query(statement, database_=self.database)

    def _auth(self) -> tuple[str, str]:
        return (self.config.user, self.config.password.get_secret_value())

    def output_tail(self, lines: int = 40) -> str:
        try:
            with open(self._log_path, "rb") as f:
                return "".join(line.decode(errors="replace") for line in deque(f, maxlen=lines))
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (the child stops ArcadeDB cleanly), wait, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("embedded Bolt server pid %s ignored SIGTERM for %gs; killing it", proc.pid, timeout_s)
                proc.kill()
                proc.wait(5)
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False




if __name__ == "__main__":
    main()  # the child ends here (os._exit) and never pays for importing Ray
