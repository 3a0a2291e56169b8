"""Closed-loop load on the HTTP API: the workloads, one level, a sweep of levels, CPU per request."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time

import httpx

from benchmarks.harness import DATASETS
from benchmarks.loadgen import RunResult, closed_loop, cpu_ms_per_request, process_cpu
from benchmarks.speed.real_stages import PARTIAL, RAMP_S


def own_process_cpu() -> dict[int, tuple[str, float]]:
    """CPU so far of this run's processes only (descendants of this driver: Ray's workers and HAProxy, the
    monolith, the Bolt server children), never another user's Ray on the same machine."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    own = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in own and pid not in own:
                own.add(pid)
                grew = True
    own.discard(os.getpid())  # the load generator reports its own CPU
    # A process that is exiting has an empty command line: nothing to name it by, and it is gone next time.
    return {pid: v for pid, v in process_cpu(("",)).items() if pid in own and v[0]}


WORKLOADS = {
    "retrieve_default": ("/v1/retrieve", {}),
    "retrieve_hybrid": ("/v1/retrieve", {"mode": "hybrid"}),
    "retrieve_hybrid_graph": ("/v1/retrieve", {"mode": "hybrid+graph"}),  # when SciFact is in the graph store too
    "answer": ("/v1/answer", {}),
}


_SENT = itertools.count()  # every request of the run, whatever the level or system


def payload_for(queries: list[str], extra: dict, collection: str = "scifact"):
    """The questions in one cycle over the whole run (not restarting at each level): SciFact's 1,109 questions
    outnumber the Embedder's 1,024 cached query vectors, so no request is answered from that cache (each
    question was last asked 1,109 requests earlier); real traffic repeats far less than a restarted cycle."""
    return lambda n: {"collection": collection, "query": queries[next(_SENT) % len(queries)], **extra}


async def run_level(url: str, path: str, payload, c: int, seconds: float, min_requests: int) -> RunResult:
    # Enough requests for `seconds` at the rate a short probe shows, at least min_requests (capped by time).
    probe = await closed_loop(f"{url}{path}", payload, c, max(2 * c, 8), ramp_s=0.0, keep_timings=False)
    rate = max(probe.summary()["qps"], 0.5)
    n = max(min_requests, int(rate * seconds))
    return await closed_loop(
        f"{url}{path}", payload, c, n, ramp_s=RAMP_S, max_wall_s=max(seconds * 3, 60), timeout_s=120
    )


def workloads(collections: dict) -> list[str]:
    return [w for w in WORKLOADS if w != "retrieve_hybrid_graph" or "scifact_graph" in collections]


def sweep(
    url: str, label: str, levels: list[int], seconds: float, min_requests: int, queries: list[str], workloads: list[str]
) -> dict:
    out: dict[str, dict] = {}
    for name in workloads:
        path, extra = WORKLOADS[name]
        out[name] = {}
        for c in levels:
            before = own_process_cpu()
            run = asyncio.run(run_level(url, path, payload_for(queries, extra), c, seconds, min_requests))
            s = run.summary()
            s["cpu_ms_per_request"] = cpu_ms_per_request(before, own_process_cpu(), len(run.samples) + run.extra_ok)
            s["wall_s"] = round(run.wall_s, 1)
            out[name][str(c)] = s
            PARTIAL.parent.mkdir(parents=True, exist_ok=True)
            PARTIAL.with_name(f"partial-{label}.json").write_text(
                json.dumps(out, indent=1)
            )  # a crash later keeps what was measured
            print(
                f"  {label:8s} {name:16s} c={c:<3d} qps={s['qps']:7.2f} p50={s['p50_ms']:8.1f} p95={s['p95_ms']:8.1f} p99={s['p99_ms']:8.1f} "
                f"n={s['requests']} status={s['status']} stages={s['stage_p50_ms']} cpu={sum(s['cpu_ms_per_request'].values()):.0f}ms",
                flush=True,
            )
    return out


def hotpot_graph_level(url: str, c: int, seconds: float, min_requests: int) -> dict:
    from benchmarks.quality.hotpotqa_recall import load as hotpot_load

    _, questions = hotpot_load(DATASETS / "hotpotqa-100")
    run = asyncio.run(
        run_level(
            url,
            "/v1/retrieve",
            payload_for([q["question"] for q in questions], {"mode": "hybrid+graph"}, "hotpotqa"),
            c,
            seconds,
            min_requests,
        )
    )
    s = run.summary()
    print(f"  hotpotqa hybrid+graph c={c} qps={s['qps']} p95={s['p95_ms']} stages={s['stage_p50_ms']}", flush=True)
    return s


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = httpx.post(
                f"{url}/v1/retrieve", json={"collection": "scifact", "query": "warm up"}, timeout=30
            ).status_code
            if status == 200:
                return
            if 400 <= status < 500:
                raise RuntimeError(f"{url} answered {status} to a plain retrieve")
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")
