"""Crash consistency of ingest: the whole app (every process of it) killed with SIGKILL at random points of a
large ingest, restarted on the same data folder, the same ingest re-run; then the stores are checked.

    python -m benchmarks.reliability.crash_ingest [--docs 200] [--kills 3] [--seed 7] [--code DIR]

The app runs in its own session (a driver process that starts Ray and Serve, and everything Ray starts under
it); a kill freezes every process of that tree (SIGSTOP), then SIGKILLs them, so nothing gets to clean up.
A reference collection `clean` is ingested first, without a crash; the collection `crash` is ingested under
kills, each followed by a restart and a resumed run of the same ingest (`graphrag-ingest`'s client, which
resends every batch it has no answer for), and a final uninterrupted run. Figures:

  after_restart[i]   right after each restart, before the ingest is re-run: points == chunks, and (when the
                     app has it) GET /v1/collections/crash/verify: consistent, no pending intent
  final              counts of `crash` == counts of `clean`; verify consistent for both; `clean` unchanged by
                     the kills (nothing lost)

`--code DIR` serves the app from another checkout (e.g. the commit before the fix; its collection stats are
used when it has no verify endpoint). Results: benchmarks/results/crash_ingest.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import use_local_env  # noqa: E402

use_local_env()

import httpx  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import DATASETS, RESULTS, ROOT  # noqa: E402
from deployments.cli.ingest import IngestError, IngestState, ingest, read_beir_corpus  # noqa: E402

CORPUS = DATASETS / "scifact" / "corpus.jsonl.gz"
BATCH = 8

SERVE = """
import sys, time
from graph import start_local
base = start_local({"data_dir": sys.argv[1]}, port=int(sys.argv[2]), name="graphrag-crash")
print("READY", base, flush=True)
while True:
    time.sleep(3600)
"""


# ---- the app as a process tree --------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[3])


def app_processes(root: int) -> set[int]:
    """The driver, every descendant, and anything else in its session (processes that daemonised)."""
    parents: dict[int, int] = {}
    members = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)] = stat[0]
                if stat[1] == root:
                    members.add(int(entry))
    found, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parents.items() if p == pid and c not in found]
        found.update(children)
        frontier.extend(children)
    return (found | members) & set(parents)


def kill_app(root: int) -> int:
    """SIGSTOP every process of the app (so none reacts to another's death), then SIGKILL them all."""
    pids = app_processes(root)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_stat(p) is not None and not _zombie(p) for p in pids):
        time.sleep(0.2)
    return len(pids)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class App:
    def __init__(self, code: Path, data_dir: str, log_dir: Path):
        self.code, self.data_dir, self.log_dir = code, data_dir, log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.failed_starts = 0

    def start(self, timeout_s: float = 600, attempts: int = 3) -> str:
        """Starts the app; a start that fails (on a loaded machine Serve may give up on its proxy) is cleaned up and
        tried again: this measures recovery of the data, not how fast Ray starts."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start(timeout_s)
            except RuntimeError:
                if self.proc is not None:
                    kill_app(self.proc.pid)
                    self.proc.wait()
                if attempt == attempts:
                    raise
                self.failed_starts += 1
        raise AssertionError("unreachable")

    def _start(self, timeout_s: float) -> str:
        from deployments.net import free_port

        port = free_port()
        # HAProxy's stats and metrics listeners default to fixed ports (8404, 9101): another app on the machine
        # would make this one fail to start, so each start takes free ones.
        env = {
            **os.environ,
            "PYTHONPATH": str(self.code),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        }
        self.starts += 1
        log = open(self.log_dir / f"app-{self.starts}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, self.data_dir, str(port)],
            cwd=self.code,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        ready: list[str] = []
        reader = threading.Thread(
            target=lambda: ready.extend(line for line in self.proc.stdout if line.startswith("READY")), daemon=True
        )
        reader.start()
        started = time.monotonic()
        while not ready:
            if self.proc.poll() is not None or time.monotonic() - started > timeout_s:
                raise RuntimeError(f"the app did not start (see {log.name})")
            time.sleep(0.5)
        base = ready[0].split()[1]
        self.wait_writable(base, timeout_s)
        return base

    @staticmethod
    def wait_writable(base: str, timeout_s: float) -> None:
        """Until the stores answer (the start-up roll-back waits for them too)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=10).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise RuntimeError("the app never became ready")

    def kill(self) -> int:
        n = kill_app(self.proc.pid)
        self.proc.wait()
        return n

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


# ---- checks ---------------------------------------------------------------------------------------


def stats(client: httpx.Client, collection: str) -> dict | None:
    resp = client.get(f"/v1/collections/{collection}")
    return resp.json() if resp.status_code == 200 else None


def verify(client: httpx.Client, collection: str) -> dict | None:
    """The app's own consistency report; None for an app without it (the code before the fix)."""
    resp = client.get(f"/v1/collections/{collection}/verify")
    return resp.json() if resp.status_code == 200 else None


def snapshot(client: httpx.Client, collection: str) -> dict:
    s = stats(client, collection)
    v = verify(client, collection)
    out = {"stats": s, "points_equal_chunks": None if s is None else s["points"] == s["chunks"]}
    if v is not None:
        out["verify"] = {
            k: v[k]
            for k in (
                "consistent",
                "documents",
                "vector_chunks",
                "graph_chunks",
                "only_in_vector",
                "only_in_graph",
                "mismatched",
                "orphan_entities",
                "pending_intents",
            )
        }
    out["consistent"] = out["points_equal_chunks"] is not False and (v is None or v["consistent"])
    return out


def run_ingest(base: str, collection: str, docs: list[dict], state: IngestState) -> dict:
    with httpx.Client(base_url=base, timeout=600) as client:
        report = ingest(client, collection, docs, state, batch_size=BATCH, attempts=1, progress=False)
    return {"sent": report.sent, "skipped_unchanged": report.skipped_unchanged, "seconds": report.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200, help="SciFact abstracts ingested")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose app is served")
    parser.add_argument("--out", type=Path, default=RESULTS / "crash_ingest.json")
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    docs = [d for _, d in zip(range(opts.docs), read_beir_corpus(CORPUS))]
    result: dict = {
        "docs": len(docs),
        "batch": BATCH,
        "kills": opts.kills,
        "seed": opts.seed,
        "code": str(opts.code),
        "load_average_start": os.getloadavg(),
        "cycles": [],
    }
    with tempfile.TemporaryDirectory(prefix="graphrag-crash-") as tmp:
        logs = Path(tempfile.mkdtemp(prefix="graphrag-crash-logs-"))  # kept: the app's output per start
        print(f"app logs: {logs}", flush=True)
        app = App(opts.code, f"{tmp}/data", logs)
        try:
            t0 = time.monotonic()
            base = app.start()
            result["start_s"] = round(time.monotonic() - t0, 1)
            clean = run_ingest(base, "clean", docs, IngestState(None))
            result["clean_ingest"] = clean
            with httpx.Client(base_url=base, timeout=120) as client:
                result["clean"] = snapshot(client, "clean")
            print(json.dumps({"clean": result["clean"], **clean}), flush=True)
            state = IngestState(Path(tmp) / "state.json")
            for _ in range(opts.kills):
                at = rng.uniform(1.0, max(2.0, clean["seconds"] * 0.8))
                outcome: dict = {}
                worker = threading.Thread(
                    target=lambda outcome=outcome, base=base: outcome.update(_attempt(base, docs, state)), daemon=True
                )
                worker.start()
                worker.join(at)
                processes = app.kill()
                worker.join(60)
                intents_dir = Path(f"{tmp}/data/intents")
                at_kill = (
                    [json.loads(p.read_text()) for p in intents_dir.glob("*.json")] if intents_dir.exists() else None
                )
                t1 = time.monotonic()
                base = app.start()
                restart_s = round(time.monotonic() - t1, 1)
                intents_left = len(list(intents_dir.glob("*.json"))) if intents_dir.exists() else None
                with httpx.Client(base_url=base, timeout=120) as client:
                    cycle = {
                        "kill_after_s": round(at, 1),
                        "processes_killed": processes,
                        "restart_s": restart_s,
                        "acknowledged_docs": len(state.hashes),
                        "ingest_outcome": outcome.get("error", "finished"),
                        "after_restart": snapshot(client, "crash"),
                        "clean_after_restart": snapshot(client, "clean"),
                        # In-flight batches the kill interrupted (None: an app without intent records).
                        "intent_records_at_kill": None if at_kill is None else len(at_kill),
                        "docs_in_flight_at_kill": None if at_kill is None else sum(len(i["doc_ids"]) for i in at_kill),
                        "intent_records_after_restart": intents_left,
                    }
                result["cycles"].append(cycle)
                print(json.dumps(cycle), flush=True)
            result["final_ingest"] = run_ingest(base, "crash", docs, state)
            with httpx.Client(base_url=base, timeout=120) as client:
                result["final"] = {"crash": snapshot(client, "crash"), "clean": snapshot(client, "clean")}
        finally:
            app.stop()
    final = result["final"]
    counts = ("points", "chunks", "entities", "relations")
    result["figures"] = {
        "consistent_after_every_restart": all(c["after_restart"]["consistent"] for c in result["cycles"]),
        "inconsistent_restarts": sum(not c["after_restart"]["consistent"] for c in result["cycles"]),
        "final_counts_equal_clean": all(final["crash"]["stats"][k] == final["clean"]["stats"][k] for k in counts),
        "final_consistent": final["crash"]["consistent"] and final["clean"]["consistent"],
        "clean_unchanged_by_kills": all(
            c["clean_after_restart"]["stats"] == result["clean"]["stats"] for c in result["cycles"]
        )
        and final["clean"]["stats"] == result["clean"]["stats"],
    }
    result["failed_starts_retried"] = app.failed_starts
    result["load_average_end"] = os.getloadavg()
    harness.write_json(opts.out, result)
    print(json.dumps(result["figures"], indent=2))


def _attempt(base: str, docs: list[dict], state: IngestState) -> dict:
    try:
        return {"run": run_ingest(base, "crash", docs, state)}
    except IngestError as exc:
        return {"error": str(exc)[:200]}
    except Exception as exc:  # noqa: BLE001 - the server vanished mid-request: expected here
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


if __name__ == "__main__":
    main()
