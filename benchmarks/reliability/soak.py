"""Soak: mixed traffic at about 60 % of capacity for a long time; what grows, what drifts.

    flock /tmp/graphrag-heavy.lock python -m benchmarks.reliability.soak [--minutes 30] [--share 0.6]

The app as `serve deploy` puts it up (a `ray start` head, configs/local.yaml, as benchmarks/reliability/
rolling_upgrade.py does), the sample corpus ingested. Capacity: a closed loop at c=8 of the same mix for
`--capacity-s`; then Poisson arrivals at `--share` of it for `--minutes`: retrieve 40 %, answer 30 %, streamed
chat completions 20 % (read to the last chunk), ingest 5 % and delete 5 % (of a document a previous ingest added,
in a second collection), after `--warmup-min` (3) of the same arrivals that the figures leave out (reported as
`warmup`; in runs 3-5, without one, the first 5-minute window's p95 was 28-54 % above the second's). Every
`--sample-s`, per replica (Serve's status API gives the pids): RSS, open file descriptors; and the Bolt server's
established connections. Figures: per replica RSS at the start and end and its
growth over the last 20 minutes (target ≤ 5 %), fds and Bolt connections first → last (no growth); p95 per
5-minute window and its drift from the first window (target ≤ 15 %), next to the same drift of a fixed piece of
CPU work timed in a process of its own at every sample (harness.machine_probe_ms: the shared machine's speed of the
moment) and the correlation of the two; `failed` (target 0) per kind; `verify` consistent for both collections at
the end. Results: benchmarks/results/soak.json (or --out).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks import harness
from benchmarks.cluster.cluster_view import ClusterView, get_json, post_json, wait_for
from benchmarks.cluster.ray_nodes import RayNode, node_env, session_pids
from benchmarks.harness import QUERIES, ROOT, machine_probe_ms, quiet_port
from benchmarks.loadgen import percentile
from benchmarks.reliability.rolling_upgrade import base_config, on_new_version, serve_deploy, upgrade_env

READS, CHURN = "soak", "soak-churn"
MIX = {"retrieve": 0.40, "answer": 0.30, "chat_stream": 0.20, "ingest": 0.05, "delete": 0.05}
WINDOW_S = 300


class Traffic:
    """One request of a kind; records (wall time, kind, status, latency)."""

    def __init__(self, base: str, session: aiohttp.ClientSession):
        self.base, self.session = base, session
        self.records: list[tuple[float, str, int, float]] = []
        self.ingested: list[str] = []
        self.n = 0

    def _next_doc(self) -> dict:
        self.n += 1
        return {"id": f"churn-{self.n}", "text": f"Churn document {self.n}. " + QUERIES[self.n % len(QUERIES)] * 3}

    async def one(self, kind: str) -> None:
        self.n += 1
        query = QUERIES[self.n % len(QUERIES)]
        started, wall = time.monotonic(), time.time()
        status = 0
        try:
            if kind == "retrieve":
                status = await self._post("/v1/retrieve", {"collection": READS, "query": query, "top_k": 5})
            elif kind == "answer":
                status = await self._post("/v1/answer", {"collection": READS, "query": query, "top_k": 5})
            elif kind == "chat_stream":
                body = {"messages": [{"role": "user", "content": query}], "stream": True, "collection": READS}
                async with self.session.post(f"{self.base}/v1/chat/completions", json=body) as resp:
                    async for _ in resp.content:  # to the last chunk ([DONE])
                        pass
                    status = resp.status
            elif kind == "ingest":
                doc = self._next_doc()
                status = await self._post("/v1/ingest", {"collection": CHURN, "documents": [doc]})
                if status == 200:
                    self.ingested.append(doc["id"])
            elif kind == "delete":
                if not self.ingested:
                    return
                doc_id = self.ingested.pop(random.randrange(len(self.ingested)))
                url = f"{self.base}/v1/documents/{doc_id}?collection={CHURN}"
                async with self.session.delete(url) as resp:
                    await resp.read()
                    status = resp.status
        except (TimeoutError, aiohttp.ClientError):
            status = 0
        self.records.append((wall, kind, status, time.monotonic() - started))

    async def _post(self, path: str, body: dict) -> int:
        async with self.session.post(f"{self.base}{path}", json=body) as resp:
            await resp.read()
            return resp.status


def kinds(rng: random.Random) -> str:
    return rng.choices(list(MIX), weights=list(MIX.values()))[0]


async def capacity(base: str, seconds: float, concurrency: int = 8) -> float:
    """Requests/s of the mix at c=8, closed loop."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        traffic, rng = Traffic(base, session), random.Random(1)
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                await traffic.one(kinds(rng))

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        ok = sum(1 for r in traffic.records if r[2] == 200)
        return ok / (time.monotonic() - t0)


def proc_stats(pid: int) -> dict | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]  # utime, stime
    except OSError:
        return None
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    cpu_s = sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK")
    return {"rss_mb": round(rss_kb / 1024, 1), "fds": fds, "cpu_s": round(cpu_s, 2)}


def established_to(port: int) -> int:
    """Established TCP connections whose local port is `port` (the Bolt server's side of each client connection)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                n += 1
    return n


async def sampler(view: ClusterView, bolt_port: int, every_s: float, stop: asyncio.Event, out: list) -> None:
    while not stop.is_set():
        app = await asyncio.to_thread(view.app) or {"deployments": {}}
        row: dict = {"t": time.time(), "bolt_connections": established_to(bolt_port), "replicas": {}}
        row["machine_probe_ms"] = await asyncio.to_thread(machine_probe_ms)
        for name, d in app["deployments"].items():
            for r in d["replicas"]:
                if r.get("pid") and r["state"] == "RUNNING":
                    stats = proc_stats(r["pid"])
                    if stats:
                        row["replicas"][f"{name}#{r['replica_id'][-6:]}"] = stats
        out.append(row)
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


async def soak(base: str, rate: float, seconds: float, view: ClusterView, bolt_port: int, every_s: float) -> dict:
    rng = random.Random(7)
    samples: list[dict] = []
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        traffic = Traffic(base, session)
        sampling = asyncio.ensure_future(sampler(view, bolt_port, every_s, stop, samples))
        t0, at, pending = time.monotonic(), 0.0, set()
        while True:
            at += rng.expovariate(rate)
            if at >= seconds:
                break
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            task = asyncio.ensure_future(traffic.one(kinds(rng)))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        stop.set()
        await sampling
    return {"records": traffic.records, "samples": samples}


def drift(values: list[float]) -> float:
    """The largest move of a window's figure from the first window's, as a fraction of it."""
    return round(max(abs(v / values[0] - 1) for v in values), 3)


def app_cpu_ms_per_request(samples: list, records: list) -> float | None:
    """The replicas' CPU time between the first and last of `samples`, per request started in between: the app's
    own work per request, which a slower machine does not change but a drift of the app would."""
    if len(samples) < 2:
        return None
    first, last = samples[0], samples[-1]
    both = set(first["replicas"]) & set(last["replicas"])
    if not all("cpu_s" in first["replicas"][n] for n in both):
        return None
    cpu = sum(last["replicas"][n]["cpu_s"] - first["replicas"][n]["cpu_s"] for n in both)
    done = sum(1 for r in records if first["t"] <= r[0] < last["t"])
    return round(cpu / done * 1000, 2) if done else None


def minutes_of(records: list, started: float) -> list[list[float]]:
    """The latencies of the successful reads (every kind but ingest) started in each minute from `started`."""
    minutes: list[list[float]] = []
    for wall, kind, status, latency in records:
        if wall >= started and status == 200 and kind != "ingest":
            m = int((wall - started) // 60)
            minutes.extend([] for _ in range(m + 1 - len(minutes)))
            minutes[m].append(latency)
    return [sorted(m) for m in minutes]


def warmup_figures(records: list, started: float) -> dict:
    """What the warm-up before `started` served: requests, failed, the reads' p95 (not in the soak's figures)."""
    before = [r for r in records if r[0] < started]
    reads = sorted(r[3] for r in before if r[2] == 200 and r[1] != "ingest")
    return {
        "requests": len(before),
        "failed": sum(1 for r in before if r[2] != 200),
        "p95_ms_reads": round(percentile(reads, 95) * 1000, 1) if reads else None,
    }


def figures(records: list, samples: list, started: float) -> dict:
    out: dict = {"by_kind": {}}
    for kind in MIX:
        rs = [r for r in records if r[1] == kind]
        ok = sorted(r[3] for r in rs if r[2] == 200)
        out["by_kind"][kind] = {
            "requests": len(rs),
            "failed": sum(1 for r in rs if r[2] != 200),
            "status": dict(Counter(str(r[2]) for r in rs)),
            "p95_ms": round(percentile(ok, 95) * 1000, 1) if ok else None,
        }
    out["failed"] = sum(k["failed"] for k in out["by_kind"].values())
    windows = []
    for w in range(int((records[-1][0] - started) // WINDOW_S) + 1 if records else 0):
        lo = started + w * WINDOW_S
        lat = sorted(r[3] for r in records if lo <= r[0] < lo + WINDOW_S and r[2] == 200 and r[1] != "ingest")
        inside = [s for s in samples if lo <= s["t"] < lo + WINDOW_S]
        probes = sorted(s["machine_probe_ms"] for s in inside)
        if len(lat) >= 20:
            windows.append(
                {
                    "from_min": w * WINDOW_S // 60,
                    "requests": len(lat),
                    "p95_ms": round(percentile(lat, 95) * 1000, 1),
                    "machine_probe_ms_p50": probes[len(probes) // 2] if probes else None,
                    "app_cpu_ms_per_request": app_cpu_ms_per_request(inside, records),
                }
            )
    out["p95_windows_reads"] = windows
    out["p95_minutes_reads"] = [  # the same, minute by minute: a warm-up or a step shows where it is
        round(percentile(m, 95) * 1000, 1) if len(m) >= 20 else None for m in minutes_of(records, started)
    ]
    if windows:
        out["p95_drift_vs_first_window"] = drift([w["p95_ms"] for w in windows])
        probes = [w["machine_probe_ms_p50"] for w in windows]
        if None not in probes:  # the machine's own drift over the same windows, and how the p95 followed it
            out["machine_probe_drift_vs_first_window"] = drift(probes)
            out["p95_machine_correlation"] = round(float(np.corrcoef([w["p95_ms"] for w in windows], probes)[0, 1]), 3)
    if samples:
        first, last = samples[0], samples[-1]
        mark = last["t"] - 20 * 60
        twenty = min(samples, key=lambda s: abs(s["t"] - mark))
        out["replicas"] = {
            name: {
                "rss_mb_start": first["replicas"][name]["rss_mb"],
                "rss_mb_end": stats["rss_mb"],
                "rss_mb_20_min_before_end": twenty["replicas"].get(name, {}).get("rss_mb"),
                "rss_growth_last_20_min": (
                    round(stats["rss_mb"] / twenty["replicas"][name]["rss_mb"] - 1, 4)
                    if name in twenty["replicas"]
                    else None
                ),
                "fds_start": first["replicas"][name]["fds"],
                "fds_end": stats["fds"],
            }
            for name, stats in last["replicas"].items()
            if name in first["replicas"]
        }
        out["replicas_not_there_throughout"] = sorted(set(first["replicas"]) ^ set(last["replicas"]))
        out["bolt_connections"] = {"start": first["bolt_connections"], "end": last["bolt_connections"]}
        out["bolt_connections_max"] = max(s["bolt_connections"] for s in samples)
    return out


def main() -> None:
    parser = harness.cli(__doc__)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--share", type=float, default=0.6, help="of the measured capacity")
    parser.add_argument("--capacity-s", type=float, default=45)
    parser.add_argument("--sample-s", type=float, default=20)
    parser.add_argument(
        "--warmup-min", type=float, default=3, help="of the same traffic before the soak's clock starts (not figured)"
    )
    parser.add_argument("--out", default="soak.json")
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="graphrag-soak-"))
    env = upgrade_env()
    result: dict = {"command": harness.command(), "date": harness.utc_now(), "minutes": opts.minutes, "mix": MIX}
    result["load_average_1m_start"] = round(os.getloadavg()[0], 2)
    head = RayNode("head", tmp / "head", node_env(env, worker=False), num_cpus=2)
    try:
        head.start(tmp / "head.log")
        dashboard = f"http://127.0.0.1:{head.dashboard_port}"
        view = ClusterView(dashboard)
        wait_for("the head node", lambda: view.alive_nodes(), 180)
        http_port = quiet_port()
        config = base_config(tmp / "data", http_port)
        bolt_port = config["applications"][0]["args"]["graph"]["embedded_port"]
        serve_deploy(config, tmp / "base.yaml", dashboard, env)
        wait_for("the app", lambda: on_new_version(view, 0, (), bool), 420, every_s=1)
        base = f"http://127.0.0.1:{http_port}"
        documents = [
            {"id": p.stem, "text": p.read_text(), "metadata": {"source": p.name}}
            for p in sorted((ROOT / "configs" / "sample").glob("*.md"))
        ]
        post_json(f"{base}/v1/ingest", {"collection": READS, "documents": documents}, timeout=600)
        post_json(f"{base}/v1/ingest", {"collection": CHURN, "documents": documents[:1]}, timeout=600)
        cap = asyncio.run(capacity(base, opts.capacity_s))
        rate = round(cap * opts.share, 2)
        result.update(capacity_rps=round(cap, 2), rate_rps=rate)
        print(f"capacity {cap:.2f}/s, soak at {rate}/s for {opts.warmup_min} + {opts.minutes} min", flush=True)
        started = time.time() + opts.warmup_min * 60
        seconds = (opts.warmup_min + opts.minutes) * 60
        run = asyncio.run(soak(base, rate, seconds, view, bolt_port, opts.sample_s))
        measured = [s for s in run["samples"] if s["t"] >= started]
        result["warmup"] = {"minutes": opts.warmup_min, **warmup_figures(run["records"], started)}
        result.update(figures([r for r in run["records"] if r[0] >= started], measured, started))
        result["verify"] = {
            c: {
                k: v
                for k, v in get_json(f"{base}/v1/collections/{c}/verify", 120).items()
                if k != "inconsistent_doc_ids"
            }
            for c in (READS, CHURN)
        }
        result["samples"] = run["samples"]
        result["collection_after"] = get_json(f"{base}/v1/collections/{READS}")
    finally:
        result["load_average_1m_end"] = round(os.getloadavg()[0], 2)
        harness.write_json(opts.out, result)
        head.stop()
        left = session_pids(head.sid) if head.proc else []
        if left:
            print(f"processes still alive: {left}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
