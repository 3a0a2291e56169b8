"""The embedded Neo4j-protocol graph store: ArcadeDB (a JVM, via arcadedb-embedded) serving Bolt on loopback,
run in a child process that owns the data folder and dies with its parent.

Run alone: `python -m deployments.graph.embedded.server --host 127.0.0.1 --port 7687 --data DIR` with the root password
and the read-only user's password on standard input (its first two lines), never on the command line.

What protects the store: Bolt is the only listener (ArcadeDB's HTTP API is stopped once the server is up, no other
protocol plugin is loaded), both passwords are random per data folder (deployments/graph/store/credentials.py), user
Cypher runs as a user whose group may only read records (writes, schema changes and LOAD CSV's file access are
refused by the engine), LOAD CSV is switched off for files and URLs, and a reaper terminates that user's queries
once they run longer than the user-query timeout, so a query the client gave up on stops using the engine.
"""

from __future__ import annotations

import argparse
import json
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

from deployments.config import GraphConfig
from deployments.graph.store.credentials import READER_USER, ROOT_USER, StoreCredentials, load_or_create
from deployments.lifetime import alive, cmdline, read_pid, terminate
from deployments.net import free_port, require_loopback

log = logging.getLogger("graphrag.bolt_server")

DEFAULT_DATABASE = "graphrag"
DEFAULT_HEAP = "1g"
READY_LINE = "BOLT-SERVER-READY"
PID_FILE = "bolt-server.pid"  # in the data folder: the child that owns it
# ArcadeDB refuses shorter root passwords.
MIN_PASSWORD_CHARS = 8
READER_GROUP = "graphrag_reader"
REAPER_PERIOD_S = 0.1
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class BoltServerError(RuntimeError):
    """The embedded Bolt server could not be started or died."""


# ---- the child process -------------------------------------------------------------------------


# No file or URL reads from Cypher, whoever asks (the reader's group could not read files anyway). JVM-wide
# settings: the engine reads them from the global configuration, not from the server's.
LOAD_CSV_OFF = {
    "arcadedb.opencypher.loadCsv.allowFileUrls": False,
    "arcadedb.opencypher.loadCsv.allowRemoteUrls": False,
}


def _no_load_csv() -> None:
    import jpype  # noqa: PLC0415

    GlobalConfiguration = jpype.JClass("com.arcadedb.GlobalConfiguration")
    for key, value in LOAD_CSV_OFF.items():
        setting = GlobalConfiguration.findByKey(key)
        if setting is None:
            raise BoltServerError(f"ArcadeDB has no setting {key}: cannot switch LOAD CSV off")
        setting.setValue(value)


def _secure(server, database: str, root_password: str, reader_password: str) -> None:
    """Sets both passwords (also on a folder made by an older version with another root password), gives the
    reader user a group that may read records of `database` and nothing else, and stops the HTTP listener."""
    import jpype  # noqa: PLC0415

    JSONObject = jpype.JClass("com.arcadedb.serializer.json.JSONObject")
    java_server = server._java_server
    security = java_server.getSecurity()
    # No database-level access (updateSecurity, which LOAD CSV's file access also needs; updateSchema;
    # updateDatabaseSettings), and on every type only readRecord: no create, update or delete.
    group = {"resultSetLimit": -1, "readTimeout": -1, "access": [], "types": {"*": {"access": ["readRecord"]}}}
    security.saveGroup(database, READER_GROUP, JSONObject(json.dumps(group)))
    if security.existsUser(READER_USER):
        security.updateUser(JSONObject(json.dumps({"name": READER_USER, "databases": {database: [READER_GROUP]}})))
        security.setUserPassword(READER_USER, reader_password)
    else:
        security.createUser(JSONObject(json.dumps({
            "name": READER_USER, "password": str(security.encodePassword(reader_password)),
            "databases": {database: [READER_GROUP]},
        })))  # fmt: skip
    security.setUserPassword(ROOT_USER, root_password)
    # The app speaks Bolt only; ArcadeDB's HTTP API (SQL, scripts, server commands) has no setting to stay off.
    java_server.getHttpServer().stopService()


def _reap_user_queries(server, limit_ms: int, stop: threading.Event) -> None:
    """Terminates the reader user's queries running longer than `limit_ms`: ArcadeDB's Bolt server ignores the
    transaction timeout a client sends, and a client that gives up does not stop the query."""
    registry = server._java_server.getRunningQueries()
    while not stop.wait(REAPER_PERIOD_S):
        try:
            for query in list(registry.getRunning()):
                if str(query.getUser()) == READER_USER and query.getElapsedMillis() > limit_ms:
                    if query.terminate("graphrag user-query timeout"):
                        print(
                            f"terminated user query {query.getId()} after {query.getElapsedMillis()} ms",
                            file=sys.stderr,
                            flush=True,
                        )
        except Exception as exc:  # noqa: BLE001 - a failed round is retried; the reaper must not die
            print(f"user-query reaper: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def _serve(args: argparse.Namespace, password: str, reader_password: str) -> int:
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
    _no_load_csv()
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
        _secure(server, args.database, password, reader_password)
        threading.Thread(
            target=_reap_user_queries,
            args=(server, args.user_query_timeout_ms, stop),
            name="user-query-reaper",
            daemon=True,
        ).start()
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
    parser.add_argument(
        "--http-port",
        type=int,
        default=0,
        help="ArcadeDB's HTTP API port while starting (stopped once up; 0 = free port)",
    )
    parser.add_argument(
        "--user-query-timeout-ms", type=int, default=5000, help="the read-only user's queries are terminated after this"
    )
    parser.add_argument("--heap", default=DEFAULT_HEAP, help="JVM max heap, e.g. 1g")
    parser.add_argument("--parent-pid", type=int, default=0, help="stop when this process is no longer the parent")
    parser.add_argument("--start-retry-s", type=float, default=20.0)
    args = parser.parse_args(argv)
    require_loopback(args.host)
    password = sys.stdin.readline().rstrip("\r\n")
    reader_password = sys.stdin.readline().rstrip("\r\n")
    if min(len(password), len(reader_password)) < MIN_PASSWORD_CHARS:
        print(
            f"the root and reader passwords (first two lines of standard input) need at least {MIN_PASSWORD_CHARS} characters",
            file=sys.stderr,
        )
        raise SystemExit(2)
    code = _serve(args, password, reader_password)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the JVM's own teardown: the server is already stopped and its non-daemon threads could hang exit.
    os._exit(code)


# ---- the parent's handle on the child ----------------------------------------------------------


class EmbeddedBoltServer:
    """Starts and stops the ArcadeDB Bolt server child process for `config` (user must be root); the passwords
    are the data folder's (made at its first start)."""

    def __init__(self, config: GraphConfig, heap: str = DEFAULT_HEAP, start_timeout_s: float = 90.0):
        if not config.path:
            raise ValueError("graph.path (the embedded server's data folder) is not set")
        if config.user != "root":
            raise ValueError(f"the embedded ArcadeDB server authenticates its root user; graph.user is {config.user!r}")
        require_loopback(config.embedded_host)
        self.config = config
        self.host = config.embedded_host
        self.port = config.embedded_port or free_port(self.host)
        self.database = config.database or DEFAULT_DATABASE
        self.data = Path(config.path).expanduser().resolve()
        self.heap = heap
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._log_path = self.data / "bolt-server.out"
        self._pid_path = self.data / PID_FILE
        self._credentials: StoreCredentials | None = None

    @property
    def credentials(self) -> StoreCredentials:
        if self._credentials is None:
            self._credentials = load_or_create(self.data)
        return self._credentials

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
        self._stop_leftover()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        cmd = [
            sys.executable, "-m", "deployments.graph.embedded.server",
            "--host", self.host, "--port", str(self.port), "--data", str(self.data),
            "--database", self.database, "--heap", self.heap, "--parent-pid", str(os.getpid()),
            "--user-query-timeout-ms", str(max(1, round(self.config.user_query_timeout_s * 1000))),
        ]  # fmt: skip
        if self._log_path.exists():  # keep the last run's output: it may say why that child died
            self._log_path.replace(self._log_path.with_suffix(".out.prev"))
        # Output goes to a file, not a pipe nobody drains (a full pipe would block the JVM's logging).
        with open(self._log_path, "wb") as out:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=str(self.data), start_new_session=True,
            )  # fmt: skip
        self._pid_path.write_text(f"{self._proc.pid}\n")
        try:
            assert self._proc.stdin is not None
            creds = self.credentials
            self._proc.stdin.write(f"{creds.root_password}\n{creds.reader_password}\n".encode())
            self._proc.stdin.close()
            self._wait_ready()
            self._create_schema()
        except BaseException:
            self.stop()
            raise
        log.info("embedded Bolt server pid %s serving %s (data %s)", self.pid, self.uri, self.data)

    def leftover_pid(self) -> int | None:
        """The pid of a server an earlier run left on this data folder (its parent killed before it could stop it):
        named by the folder's pid file and serving this folder (`--data`). Else None."""
        pid = read_pid(self._pid_path)
        if pid is None or pid == self.pid or not alive(pid):
            return None
        argv = cmdline(pid)
        serves_folder = "--data" in argv[:-1] and argv[argv.index("--data") + 1] == str(self.data)
        return pid if serves_folder and "--parent-pid" in argv else None

    def _stop_leftover(self) -> None:
        """The folder has one owner: a server left by a crash would make ours fail on ArcadeDB's lock, obscurely."""
        pid = self.leftover_pid()
        if pid is not None:
            log.warning("embedded Bolt server pid %d of an earlier run still owns %s: stopping it", pid, self.data)
            terminate(pid, timeout_s=15.0)

    def _wait_ready(self) -> None:
        from neo4j import GraphDatabase  # noqa: PLC0415
        from neo4j.exceptions import AuthError  # noqa: PLC0415

        deadline = time.monotonic() + self.start_timeout_s
        last_error = "not started"
        while time.monotonic() < deadline:
            if not self.alive():
                code = self._proc.returncode if self._proc is not None else None
                raise BoltServerError(
                    f"the embedded Bolt server exited with code {code} before it was ready; "
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
                    raise BoltServerError(
                        f"the embedded Bolt server at {self.uri} refused the data folder's root password: {exc}"
                    ) from exc
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

        from deployments.graph.store.schema import SCHEMA

        with GraphDatabase.driver(self.uri, auth=self._auth(), connection_timeout=5.0) as driver:
            for statement in SCHEMA:
                driver.execute_query(statement, database_=self.database)

    def _auth(self) -> tuple[str, str]:
        return self.credentials.root

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
        if read_pid(self._pid_path) == proc.pid:
            self._pid_path.unlink(missing_ok=True)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()  # the child ends here (os._exit) and never pays for importing Ray
