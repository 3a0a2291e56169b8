"""Fault tolerance and load shedding of the real app under load (a local Ray, the embedded engines, the
OpenAI-protocol test double as chat and TEI reranker, each in its own process).

    python -m benchmarks.reliability.fault_tolerance

Scenarios, each with figures printed and written to benchmarks/results/fault_tolerance.json. Every answer is
counted as ok (200, every stage), degraded (200 with `degraded`) or failed (anything else), separately:
  graph_replica_kill  a Graph replica (of 2) killed mid-load: outcomes before/after the kill, how long answers
                      were impaired, the replacement time (polled from the kill on, during the load)
  vector_replica_kill the single embedded Vector replica (Qdrant Edge's owner) killed mid-load, default mode:
                      how long retrieve is unavailable, replacement time, and that no point or chunk was lost
  bolt_server_kill    the BoltServer replica (the embedded ArcadeDB) killed mid-load, hybrid+graph: the same
  stages_down       graph store killed, reranker down, chat down: /v1/retrieve 200 + degraded, /v1/answer extractive
  chat_required     chat down with chat.fallback_extractive=false: /v1/answer 503 naming the stage
  chat_429          the chat provider answers 429 + Retry-After: waited for, then answered
  fallback_chain    the first chat provider fails: the next one answers
  overload          4x the ingress capacity (max_ongoing + max_queued): fast 503 + Retry-After, admitted p95 kept
The machine may be shared: the 1-minute load average is recorded with each scenario.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time

from benchmarks import use_local_env  # noqa: E402

use_local_env()

import httpx  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import QUERIES, quiet_port  # noqa: E402
from benchmarks.loadgen import closed_loop, open_loop, outcomes, percentile  # noqa: E402

APP = "graphrag-ft"
# Every request uses the graph stage, so graph failures are exercised (the default mode skips it).
GRAPH_MODE = "hybrid+graph"
# Ingress capacity: requests in flight + queued at the proxy; beyond it Serve sheds with 503 + Retry-After.
INGRESS_ONGOING, INGRESS_QUEUED = 4, 4


def load() -> float:
    return round(os.getloadavg()[0], 2)


def payload(n: int) -> dict:
    return {"collection": "ft", "query": QUERIES[n % len(QUERIES)], "top_k": 5, "mode": GRAPH_MODE}


def summary(run) -> dict:
    s = run.summary()
    s.pop("stage_p50_ms", None)
    return s


def replica_states(deployment: str) -> list[str]:
    from ray import serve

    status = serve.status().applications[APP].deployments[deployment]
    return [state for state, n in status.replica_states.items() for _ in range(n)]


def replica_actor_names(deployment: str) -> list[str]:
    import ray

    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{APP}#{deployment}#")
    )


async def poll_replacement(
    deployment: str, victim: str, replicas: int, killed_at: float, limit_s: float = 180
) -> float | None:
    """Seconds from the kill until `replicas` RUNNING replicas again, the victim not among them; polled from the
    moment of the kill, concurrently with the load (None: not within `limit_s`)."""
    while time.monotonic() - killed_at < limit_s:
        names, states = await asyncio.gather(
            asyncio.to_thread(replica_actor_names, deployment), asyncio.to_thread(replica_states, deployment)
        )
        if states.count("RUNNING") == replicas and victim not in names and len(names) == replicas:
            return round(time.monotonic() - killed_at, 1)
        await asyncio.sleep(0.25)
    return None


def impact(samples: list, killed_at: float) -> dict:
    """ok / degraded / failed before and after the kill, and how long requests were impaired after it."""
    before = [s for s in samples if s.intended + s.latency < killed_at]
    after = [s for s in samples if s.intended + s.latency >= killed_at]
    impaired = [s.intended + s.latency - killed_at for s in after if s.outcome != "ok"]
    failed = [s.intended + s.latency - killed_at for s in after if s.outcome == "failed"]
    degraded_stages = sorted({stage for s in after for stage in (s.degraded or [])})
    return {
        "before_kill": outcomes(before),
        "after_kill": outcomes(after),
        "degraded_stages": degraded_stages,
        # From the kill to the last answer that was not a full success (degraded or failed) / that failed.
        "impaired_for_s": round(max(impaired), 1) if impaired else 0.0,
        "unavailable_for_s": round(max(failed), 1) if failed else 0.0,
        "first_ok_after_kill_s": next(
            (
                round(s.intended + s.latency - killed_at, 1)
                for s in sorted(after, key=lambda s: s.intended + s.latency)
                if s.outcome == "ok" and s.intended >= killed_at
            ),
            None,
        ),
    }


async def kill_under_load(
    base: str, deployment: str, replicas: int, mode: str, kill_after_s: float = 8, load_s: float = 60
) -> dict:
    """A replica of `deployment` killed (ray.kill, no restart by Ray: Serve replaces it) `kill_after_s` into a
    closed-loop load of /v1/retrieve; the replacement is polled from the kill on, during the load."""
    import ray

    names = replica_actor_names(deployment)
    victim = names[0]

    def body(n: int) -> dict:
        return {**payload(n), "mode": mode}

    async def kill_later() -> tuple[float, float | None]:
        await asyncio.sleep(kill_after_s)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        killed_at = time.monotonic()
        return killed_at, await poll_replacement(deployment, victim, replicas, killed_at)

    killer = asyncio.create_task(kill_later())
    run = await closed_loop(f"{base}/v1/retrieve", body, concurrency=4, requests=100_000, max_wall_s=load_s)
    killed_at, replaced_s = await killer
    return {
        "deployment": deployment,
        "replicas": replicas,
        "mode": mode,
        "killed": victim,
        "replicas_before": names,
        "replicas_after": replica_actor_names(deployment),
        "replaced_after_s": replaced_s,
        "load_s": load_s,
        "kill_after_s": kill_after_s,
        "load": summary(run),
        **impact(run.samples, killed_at),
        "load_average_1m": load(),
    }


def store_state(api: httpx.Client) -> dict:
    stats = api.get("/v1/collections/ft").json()
    verify = api.get("/v1/collections/ft/verify").json()
    return {"stats": stats, "consistent": verify.get("consistent")}


async def store_replica_kill(base: str, api: httpx.Client, deployment: str, mode: str) -> dict:
    """The single replica owning an embedded store killed under load: how long retrieve is impaired or
    unavailable, when Serve has replaced it, and that the store lost nothing (counts and consistency)."""
    before = await asyncio.to_thread(store_state, api)
    result = await kill_under_load(base, deployment, 1, mode)
    deadline = time.monotonic() + 120  # if the replacement outlasted the load: wait for it before comparing
    while time.monotonic() < deadline:
        r = await asyncio.to_thread(api.post, "/v1/retrieve", json={**payload(0), "mode": mode})
        if r.status_code == 200 and not r.json().get("degraded"):
            break
        await asyncio.sleep(1)
    after = await asyncio.to_thread(store_state, api)
    result.update(
        store_before=before, store_after=after, data_lost=before["stats"] != after["stats"] or not after["consistent"]
    )
    return result


def degraded_stages(resp: httpx.Response) -> list[str]:
    return [d["stage"] for d in resp.json().get("degraded", [])] if resp.status_code == 200 else []


def outcome(resp: httpx.Response) -> str:
    if resp.status_code != 200:
        return "failed"
    return "degraded" if degraded_stages(resp) else "ok"


def stages_down(api: httpx.Client, aux) -> dict:
    from ray.serve.handle import DeploymentHandle

    out = {}
    q = {"collection": "ft", "query": QUERIES[0], "mode": GRAPH_MODE}

    async def bolt_pid() -> int:
        # On Serve's fast path a handle routes on its caller's event loop: an uncached handle (serve.shutdown
        # would shut a cached one down on this loop after asyncio.run closed it), shut down on its own loop.
        handle = DeploymentHandle("BoltServer", APP)
        try:
            return (await handle.info.remote())["pid"]
        finally:
            await handle.shutdown_async()

    pid = asyncio.run(bolt_pid())
    os.kill(pid, signal.SIGKILL)
    r = api.post("/v1/retrieve", json=q)
    out["graph_store_killed"] = {
        "retrieve_status": r.status_code,
        "outcome": outcome(r),
        "degraded": degraded_stages(r),
    }
    aux.stop()  # the reranker and chat endpoints go away
    r = api.post("/v1/retrieve", json=q)
    out["graph_store_and_reranker_down"] = {
        "retrieve_status": r.status_code,
        "outcome": outcome(r),
        "degraded": degraded_stages(r),
    }
    r = api.post("/v1/answer", json=q)
    body = r.json()
    out["graph_store_reranker_chat_down"] = {
        "answer_status": r.status_code,
        "outcome": outcome(r),
        "degraded": degraded_stages(r),
        "model": body.get("model"),
        "citations": len(body.get("citations", [])),
    }
    out["load_average_1m"] = load()
    return out


def chat_429(api: httpx.Client, primary) -> dict:
    primary.fault("chat", status=429, retry_after=2)
    t0 = time.monotonic()
    r = api.post("/v1/answer", json={"collection": "ft", "query": QUERIES[1], "mode": GRAPH_MODE})
    calls = primary.requests("chat")[-2:]
    return {
        "status": r.status_code,
        "outcome": outcome(r),
        "model": r.json().get("model"),
        "degraded": degraded_stages(r),
        "provider_statuses": [c.status for c in calls],
        "retry_after_s": 2,
        "waited_s": round(calls[-1].mono - calls[0].mono, 2),
        "answer_latency_s": round(time.monotonic() - t0, 2),
        "bound_s": "chat.timeout_s=20",
        "load_average_1m": load(),
    }


def fallback_chain(api: httpx.Client, primary, second) -> dict:
    primary.fault("chat", status=500, times=3)  # every attempt (chat.max_attempts=3) of the first provider
    r = api.post("/v1/answer", json={"collection": "ft", "query": QUERIES[2], "mode": GRAPH_MODE})
    return {
        "status": r.status_code,
        "outcome": outcome(r),
        "model": r.json().get("model"),
        "degraded": degraded_stages(r),
        "primary_statuses": [c.status for c in primary.requests("chat")[-3:]],
        "second_provider_calls": len(second.requests("chat")),
        "load_average_1m": load(),
    }


async def overload(base: str) -> dict:
    """Capacity = the throughput at max_ongoing_requests concurrent requests; then Poisson arrivals at 4x it."""
    at_capacity = await closed_loop(
        f"{base}/v1/retrieve", payload, concurrency=INGRESS_ONGOING, requests=10_000, max_wall_s=25
    )
    rate = at_capacity.summary()["qps"]
    over = await open_loop(f"{base}/v1/retrieve", payload, rate=4 * rate, duration_s=25, timeout_s=60)
    shed = sorted(s.latency for s in over.samples if s.status in (429, 503))
    admitted = sorted(s.latency for s in over.samples if s.status == 200)
    async with httpx.AsyncClient(timeout=30) as client:
        probes = await asyncio.gather(
            *(client.post(f"{base}/v1/retrieve", json=payload(i)) for i in range(8 * INGRESS_ONGOING))
        )
    rejected = [p for p in probes if p.status_code in (429, 503)]
    return {
        "capacity": {"max_ongoing_requests": INGRESS_ONGOING, "max_queued_requests": INGRESS_QUEUED, "qps": rate},
        "at_capacity": summary(at_capacity),
        "offered_qps_4x": round(4 * rate, 2),
        "at_4x": summary(over),
        "shed_pct": round(100 * len(shed) / max(len(over.samples), 1), 1),
        "shed_p50_ms": round(percentile(shed, 50) * 1000, 1) if shed else None,
        "shed_p95_ms": round(percentile(shed, 95) * 1000, 1) if shed else None,
        "admitted_p95_ms": round(percentile(admitted, 95) * 1000, 1) if admitted else None,
        "burst_probe": {
            "sent": len(probes),
            "rejected": len(rejected),
            "retry_after": sorted({p.headers.get("retry-after") for p in rejected}, key=str),
        },
        "load_average_1m": load(),
    }


def chat_required(tmp: str) -> dict:
    """A second app: chat down and chat.fallback_extractive=false → /v1/answer 503 naming the chat stage."""
    from graph import build_app

    dead = f"http://127.0.0.1:{quiet_port()}/v1"
    chat = {"base_url": dead, "max_attempts": 1, "timeout_s": 5, "fallback_extractive": False}
    # The running proxy keeps its port: the app is reached under /strict on it.
    harness.deploy(build_app({"data_dir": f"{tmp}/strict", "chat": chat}), "graphrag-ft-strict", route_prefix="/strict")
    return {"route_prefix": "/strict", "chat_base_url": dead}


def main() -> None:
    harness.cli(__doc__).parse_args()
    from ray import serve

    from graph import build_app
    from tests.fakes import sample_documents
    from tests.openai_server import OpenAIProtocolServer
    from tests.openai_server_process import OpenAIProtocolServerProcess

    results: dict = {"started_load_average": os.getloadavg()}
    with (
        tempfile.TemporaryDirectory(prefix="graphrag-ft-") as tmp,
        OpenAIProtocolServer() as primary,
        OpenAIProtocolServer(model_suffix="-second") as second,
        OpenAIProtocolServerProcess() as aux,
    ):
        args = {
            "data_dir": f"{tmp}/data",
            "chat": {
                "base_url": primary.base_url,
                "model": "primary",
                "max_attempts": 3,
                "backoff_base_s": 0.1,
                "timeout_s": 20,
                "fallbacks": [{"base_url": second.base_url, "model": "second"}],
            },
            "deployments": {
                "ingress": {
                    "max_ongoing_requests": INGRESS_ONGOING,
                    "max_queued_requests": INGRESS_QUEUED,
                    "backpressure_config": {"status_code": 503, "retry_after_s": 1},
                },
                "graph": {"num_replicas": 2, "max_ongoing_requests": 100},
                "bolt_server": {"num_replicas": 1, "health_check_period_s": 1.0},
            },
        }
        with harness.local_app(args, APP) as base:
            api = httpx.Client(base_url=base, timeout=120)
            assert api.post("/v1/ingest", json={"collection": "ft", "documents": sample_documents()}).status_code == 200
            print("overload ...", flush=True)
            results["overload"] = asyncio.run(overload(base))
            print(json.dumps(results["overload"]), flush=True)
            for name, scenario in (
                ("graph_replica_kill", lambda: kill_under_load(base, "Graph", 2, GRAPH_MODE)),
                ("vector_replica_kill", lambda: store_replica_kill(base, api, "Vector", "hybrid")),
                ("bolt_server_kill", lambda: store_replica_kill(base, api, "BoltServer", GRAPH_MODE)),
            ):
                print(f"{name} ...", flush=True)
                results[name] = asyncio.run(scenario())
                print(json.dumps(results[name]), flush=True)
            results["chat_429"] = chat_429(api, primary)
            print(json.dumps(results["chat_429"]), flush=True)
            results["fallback_chain"] = fallback_chain(api, primary, second)
            print(json.dumps(results["fallback_chain"]), flush=True)
            # The remaining scenarios break endpoints: a reranker and chat that then disappear.
            serve.run(
                build_app(
                    {
                        **args,
                        "reranker": {"url": f"{aux.root_url}/rerank"},
                        "chat": {
                            "base_url": aux.base_url,
                            "model": "aux",
                            "max_attempts": 2,
                            "backoff_base_s": 0.1,
                            "timeout_s": 5,
                        },
                    }
                ),
                name=APP,
                route_prefix="/",
            )
            r = api.post("/v1/retrieve", json={"collection": "ft", "query": QUERIES[0], "mode": GRAPH_MODE})
            results["reranker_endpoint_up"] = {"status": r.status_code, "reranker": r.json().get("reranker")}
            results["stages_down"] = stages_down(api, aux)
            print(json.dumps(results["stages_down"]), flush=True)
            serve.delete(APP)
            strict = chat_required(tmp)
            strict_api = httpx.Client(base_url=f"{base}{strict['route_prefix']}", timeout=120)
            strict_api.post(
                "/v1/ingest", json={"collection": "ft", "documents": sample_documents()[:2]}
            ).raise_for_status()
            r = strict_api.post("/v1/answer", json={"collection": "ft", "query": QUERIES[0], "mode": GRAPH_MODE})
            results["chat_required"] = {
                "answer_status": r.status_code,
                "outcome": outcome(r),
                "stage": r.json().get("stage"),
                "retry_after": r.headers.get("retry-after"),
                "detail": r.json().get("detail", "")[:200],
                "load_average_1m": load(),
            }
            print(json.dumps(results["chat_required"]), flush=True)
    harness.write_json("fault_tolerance.json", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
