"""Issue 10, finding 2: does a timed-out user query stop using the store? Runs the finding's query through
GraphService.query against a fresh embedded ArcadeDB and samples the server process's CPU (/proc/<pid>/stat,
all its threads) in 0.5 s windows from the moment the client got its timeout, and when the query left the
store (SHOW TRANSACTIONS).

    python -m benchmarks.reliability.user_query_timeout [--timeout 5] [--after 10]

Writes benchmarks/results/user_query_timeout.json. CPU figures are noisy on a shared machine: compare the
windows of one run (busy while the query runs, ~0 once it is stopped) and when the query left the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks import harness  # noqa: E402
from benchmarks.harness import RESULTS  # noqa: E402
from deployments.config import GraphConfig
from deployments.errors import StageError, StageTimeout
from deployments.graph.embedded.server import EmbeddedBoltServer
from deployments.graph.service import GraphService
from deployments.net import free_port

QUERY = "UNWIND range(1,1000) AS a UNWIND range(1,1000) AS b UNWIND range(1,40) AS c RETURN count(*)"
OUT = RESULTS / "user_query_timeout.json"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def still_running(server: EmbeddedBoltServer) -> bool:
    """Whether the store still runs the query (SHOW TRANSACTIONS as root)."""
    from neo4j import GraphDatabase  # noqa: PLC0415

    with GraphDatabase.driver(server.uri, auth=server.credentials.root) as driver:
        records, _, _ = driver.execute_query("SHOW TRANSACTIONS", database_=server.database)
    return any(r["currentQuery"] == QUERY for r in records)


async def measure(timeout_s: float, after_s: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedBoltServer(GraphConfig(path=folder, embedded_port=free_port(), user_query_timeout_s=timeout_s))
        server.start()
        graph = GraphService(server.config, server.uri)  # as the app: credentials from the data folder
        try:
            cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
            try:
                await graph.query(QUERY)
                outcome = "finished"
            except StageTimeout:
                outcome = "504 (StageTimeout)"
            except StageError as exc:
                outcome = f"503 ({exc.reason})"
            answered_s = time.monotonic() - t0
            cpu_until_answer = cpu_seconds(server.pid) - cpu0
            windows, gone_after = [], None
            for _ in range(int(after_s / 0.5)):
                c = cpu_seconds(server.pid)
                await asyncio.sleep(0.5)
                windows.append(round((cpu_seconds(server.pid) - c) / 0.5, 3))
                if gone_after is None and not still_running(server):
                    gone_after = round(time.monotonic() - t0 - answered_s, 2)
            reaper = [line for line in server.output_tail(400).splitlines() if "terminated user query" in line]
        finally:
            await graph.aclose()
            server.stop()
    return {
        "query": QUERY, "user_query_timeout_s": timeout_s, "outcome": outcome, "answered_after_s": round(answered_s, 2),
        "server_cpu_s_until_answer": round(cpu_until_answer, 2),
        "server_cpu_cores_per_0.5s_window_after_answer": windows,
        "server_mean_cores_from_1s_after_answer": round(sum(windows[2:]) / max(1, len(windows) - 2), 3),
        "query_gone_from_the_store_within_s_of_answer": gone_after, "reaper": reaper,
        "load_average": os.getloadavg(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=10.0, help="seconds sampled after the answer")
    args = parser.parse_args()
    result = asyncio.run(measure(args.timeout, args.after))
    print(json.dumps(result, indent=2))
    harness.write_json(OUT, result)


if __name__ == "__main__":
    main()
