"""Stopping the app as an operator does: SIGTERM (docker stop, systemd, Kubernetes) or SIGINT (Ctrl-C) to the
process group of `make demo`, `python graph.py demo` or `serve run`, then: how long until every process the app
started is gone and every port it held is free, and does a second start on the same ports and data folder answer.

    python -m benchmarks.reliability.stop_signals [--entry graph.py --entry serve-run --entry make] [--signal TERM]

Every process of a run carries a marker in its environment (GRAPHRAG_STOP_MARK=<random>), inherited by Ray's
node processes, its workers, HAProxy and the Bolt server's JVM whatever their process group or session: "the
app's processes" are exactly the ones with that marker, and only those are ever signalled (cleanup included).
Writes benchmarks/results/stop_signals.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from benchmarks.cluster.ray_nodes import process_name
from benchmarks.harness import quiet_port as free_port
from deployments.lifetime import hook_env, socket_inodes, tcp_listeners

ROOT = Path(__file__).resolve().parents[2]
# The checkout whose code the started app runs: this one, or another commit's worktree to see a test fail before a fix.
APP_ROOT = Path(os.environ.get("GRAPHRAG_STOP_APP_ROOT", ROOT)).resolve()
MARK = "GRAPHRAG_STOP_MARK"
ENTRY_POINTS = ("graph.py", "serve-run", "make")
RESULTS = ROOT / "benchmarks" / "results" / "stop_signals.json"
# What a request under way when the app is stopped may get: its answer (or the app's own 4xx, e.g. a collection the
# interrupted ingest never created), a 503, or a closed connection. A timeout, a 500/502/504 or no end at all is a bug.
CLEAN_ENDS = {"200", "404", "503", "ConnectError", "RemoteProtocolError", "ReadError"}


def marked_pids(mark: str) -> list[int]:
    """Live processes whose environment holds `MARK=mark` (zombies excluded: they hold nothing)."""
    needle = f"{MARK}={mark}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            pids.append(int(entry.name))
    return pids


def listening_ports(pids: list[int]) -> set[int]:
    """TCP ports in LISTEN state whose socket belongs to one of `pids`."""
    inodes = set().union(*(socket_inodes(p) for p in pids)) if pids else set()
    return {port for port, held in tcp_listeners().items() if held & inodes}


def ports_in_use(ports: set[int]) -> set[int]:
    """Which of `ports` any process on this machine still listens on."""
    return ports & set(tcp_listeners())


@dataclass
class App:
    """One start of an entry point in a session of its own, with its marker, config, ports and data folder."""

    entry: str
    workdir: Path
    port: int
    stats_port: int
    metrics_port: int
    mark: str = field(default_factory=lambda: secrets.token_hex(8))
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def config(self) -> Path:
        return self.workdir / "serve.yaml"

    def write_config(self) -> None:
        with open(APP_ROOT / "configs" / "local.yaml") as f:
            config = yaml.safe_load(f)
        config["http_options"]["port"] = self.port
        config["applications"][0]["args"]["data_dir"] = str(self.workdir / "data")
        self.config.write_text(yaml.safe_dump(config))

    def command(self) -> list[str]:
        python = sys.executable
        if self.entry == "graph.py":
            return [python, str(APP_ROOT / "graph.py"), "demo", "--config", str(self.config)]
        if self.entry == "serve-run":
            return [str(Path(python).with_name("serve")), "run", str(self.config)]
        if self.entry == "make":
            # STAMP= : this venv is set up already (make's own would build .venv in the checkout).
            return ["make", "-s", "-C", str(APP_ROOT), "demo", f"PY={python}", "STAMP=", f"CONFIG={self.config}"]
        raise ValueError(f"unknown entry point {self.entry!r}; one of {ENTRY_POINTS}")

    def env(self) -> dict[str, str]:
        from deployments.local_env import LOCAL_ENV
        from deployments.throughput import throughput_env

        env = dict(os.environ)
        env[MARK] = self.mark
        env["PYTHONPATH"] = str(APP_ROOT)
        env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(self.stats_port)
        env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(self.metrics_port)
        if self.entry == "serve-run":
            # What an operator exports before `serve run` (configs/local.yaml: `eval "$(python graph.py env)"`).
            env.update({k: v for k, v in LOCAL_ENV.items() if k not in env})
            env.update({**throughput_env(), **hook_env()})
        return env

    def start(self, run: int) -> None:
        self.mark = secrets.token_hex(8)
        self.log = self.workdir / f"{self.entry}-{run}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=str(self.workdir),
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_answering(self, timeout_s: float = 300) -> float:
        """Seconds until the app is ready with the sample corpus ingested (the demo's own ingest, which it reports
        with "serving at"; `serve run` gets the same corpus posted here) and /v1/retrieve answers."""
        started = time.monotonic()
        deadline = started + timeout_s
        base = f"http://127.0.0.1:{self.port}"
        while not self._ingested(base):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.entry} exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.entry} did not answer within {timeout_s:g}s:\n{self.tail()}")
            time.sleep(1)
        hit = httpx.post(
            f"{base}/v1/retrieve",
            json={"collection": "demo", "query": "Which engine stores the graph?", "top_k": 3},
            timeout=60,
        )
        hit.raise_for_status()
        return time.monotonic() - started

    def wait_ready(self, timeout_s: float = 300) -> float:
        """Seconds until /readyz says 200: the issue's moment to stop `make demo` (its own ingest is then under way)."""
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.entry} exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{self.entry} was not ready within {timeout_s:g}s:\n{self.tail()}")
            time.sleep(0.5)

    def verify(self) -> dict:
        resp = httpx.get(f"http://127.0.0.1:{self.port}/v1/collections/demo/verify", timeout=60)
        resp.raise_for_status()
        return resp.json()

    def _ingested(self, base: str) -> bool:
        if self.entry != "serve-run":
            return "serving at http" in self.tail(400)
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code != 200:
                return False
            docs = [
                {"id": p.stem, "text": p.read_text(), "metadata": {"source": str(p)}}
                for p in sorted((APP_ROOT / "configs" / "sample").glob("*.md"))
            ]
            httpx.post(
                f"{base}/v1/ingest", json={"collection": "demo", "documents": docs}, timeout=300
            ).raise_for_status()
            return True
        except httpx.HTTPError:
            return False

    def stop(self, sig: signal.Signals, timeout_s: float = 30, inflight: int = 0) -> dict:
        """Signals the entry point's process group while `inflight` clients keep /v1/answer requests under way;
        measures until no marked process and no held port is left, and how the requests under way at the signal
        ended (outcome, and the latest end in seconds after the signal; a request still open then counts as "hung")."""
        assert self.proc is not None
        pids = marked_pids(self.mark)
        ports = listening_ports(pids)
        names = sorted({_short(process_name(p)) for p in pids})
        signalled = threading.Event()
        asking = threading.Semaphore(0)  # released by each client as it sends its first request
        ends: list[tuple[str, float]] = []  # (outcome, monotonic end) of every request
        clients = [
            threading.Thread(target=self._keep_asking, args=(signalled, asking, ends), daemon=True)
            for _ in range(inflight)
        ]
        for client in clients:
            client.start()
        for _ in clients:
            asking.acquire(timeout=60)
        if clients:
            time.sleep(1.0)  # every client has a request in HAProxy / the replicas when the signal lands
        sent = time.monotonic()
        signalled.set()
        os.killpg(self.proc.pid, sig)
        gone_s = ports_free_s = None
        while time.monotonic() - sent < timeout_s:
            elapsed = time.monotonic() - sent
            if ports_free_s is None and not ports_in_use(ports):
                ports_free_s = elapsed
            if gone_s is None and not marked_pids(self.mark):
                gone_s = elapsed
            if gone_s is not None and ports_free_s is not None:
                break
            time.sleep(0.1)
        left = marked_pids(self.mark)
        for client in clients:
            client.join(max(0.0, sent + timeout_s - time.monotonic()))
        under_way = [(o, end - sent) for o, end in list(ends) if end >= sent]
        under_way += [("hung", timeout_s)] * sum(c.is_alive() for c in clients)
        outcomes = [o for o, _ in under_way]
        return {
            "inflight": {o: outcomes.count(o) for o in sorted(set(outcomes))},
            "inflight_ended_s": _round(max((s for _, s in under_way), default=None)),
            "signal": sig.name,
            "processes": len(pids),
            "process_kinds": names,
            "ports": sorted(ports),
            "all_gone_s": _round(gone_s),
            "ports_free_s": _round(ports_free_s),
            "left": [f"{p} {process_name(p)[:120]}" for p in left],
            "ports_held": sorted(ports_in_use(ports)),
        }

    def _keep_asking(
        self, signalled: threading.Event, asking: threading.Semaphore, ends: list[tuple[str, float]]
    ) -> None:
        """One client: /v1/answer after /v1/answer until the signal is sent; the one under way then is let finish."""
        with httpx.Client(timeout=120) as client:
            asking.release()
            while not signalled.is_set():
                try:
                    resp = client.post(
                        f"http://127.0.0.1:{self.port}/v1/answer",
                        json={"collection": "demo", "query": "Which protocol does the graph stage use?", "top_k": 5},
                    )
                    outcome = str(resp.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                ends.append((outcome, time.monotonic()))

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log else ""
        except OSError:
            return ""

    def kill_leftovers(self) -> list[int]:
        """SIGKILL whatever of this run is still alive (marked processes only); returns their pids."""
        left = marked_pids(self.mark)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while marked_pids(self.mark) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        return left


KINDS = {
    "haproxy": "haproxy",
    "raylet": "raylet",
    "gcs_server": "gcs_server",
    "graph.embedded.server": "bolt_server",
    "graph.bolt_server": "bolt_server",  # its module before the graph package split
    "ray::": "ray::",
    "dashboard": "dashboard",
    "runtime_env": "runtime_env",
    "log_monitor": "log_monitor",
    "graph.py": "graph.py",
    "serve run": "serve run",
    "make": "make",
}


def _short(cmdline: str) -> str:
    return next((kind for needle, kind in KINDS.items() if needle in cmdline), cmdline.split(" ")[0].rsplit("/", 1)[-1])


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def new_app(entry: str, workdir: Path) -> App:
    app = App(entry, workdir, port=free_port(), stats_port=free_port(), metrics_port=free_port())
    app.write_config()
    return app


def stop_and_restart(entry: str, sig: signal.Signals, workdir: Path, starts: int = 2) -> dict:
    """Start, answer, signal, measure; again on the same ports and data folder, `starts` times in all."""
    app = new_app(entry, workdir)
    runs = []
    try:
        for run in range(1, starts + 1):
            app.start(run)
            ready_s = app.wait_answering()
            stopped = app.stop(sig, inflight=4)
            stopped["ready_s"] = round(ready_s, 1)
            stopped["leftovers_killed"] = app.kill_leftovers()
            runs.append(stopped)
    finally:
        app.kill_leftovers()
    return {"entry": entry, "signal": sig.name, "port": app.port, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entry", action="append", choices=ENTRY_POINTS)
    parser.add_argument("--signal", action="append", choices=("TERM", "INT"))
    parser.add_argument(
        "--starts", type=int, default=2, help="starts per entry point and signal (same ports, same data)"
    )
    parser.add_argument("--out", default=str(RESULTS))
    opts = parser.parse_args()
    results = []
    for entry in opts.entry or ENTRY_POINTS:
        for name in opts.signal or ("TERM", "INT"):
            workdir = Path(tempfile.mkdtemp(prefix=f"graphrag-stop-{entry}-"))
            try:
                result = stop_and_restart(entry, signal.Signals[f"SIG{name}"], workdir, opts.starts)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            print(json.dumps(result), flush=True)
            results.append(result)
    Path(opts.out).write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "command": " ".join(sys.argv),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
