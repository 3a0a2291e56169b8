"""The app on a two-node Ray cluster on this machine, deployed with `serve deploy`, and a node lost under load.

    python -m benchmarks.cluster.two_nodes                       # ~6 min on 2 shared cores → benchmarks/results/cluster.json

1. A head node (`ray start --head`, 1 CPU, the `graphrag_store` resource: it holds data_dir) and a worker node
   (1 CPU), separate raylets with their own temp folders and ports (benchmarks/cluster/ray_nodes.py).
2. `serve deploy configs/cluster-embedded.yaml` (data_dir, ports and host rewritten into a temporary copy).
3. Where Serve placed each replica (Serve's REST status), each node's HTTP proxy answering `/v1/answer`.
4. Closed-loop `/v1/answer` load through the head's proxy; the worker node is killed (its raylet SIGKILLed, then
   every other process of the node): failed and degraded requests, seconds until every deployment is healthy
   again with all its replicas on the head, the collection's points before and after.
5. The worker node restarted; a load step makes autoscaling add replicas: how many land on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import yaml

from benchmarks import harness  # noqa: E402
from benchmarks.cluster.answer_load import COLLECTION, Load, payload, summarize
from benchmarks.cluster.cluster_view import ClusterView, get_json, post_json, start_head, start_worker, wait_for
from benchmarks.cluster.ray_nodes import RayNode, node_env, session_pids
from benchmarks.harness import RESULTS, ROOT, quiet_port  # noqa: E402
from deployments.local_env import LOCAL_ENV
from deployments.throughput import throughput_env

STATELESS = ("Ingress", "Embedder", "Reranker", "Chat")
PINNED = ("Vector", "BoltServer", "Graph")


def cluster_config(source: Path, out: Path, data_dir: Path, http_port: int, trace_dir: Path) -> Path:
    """The shipped config with this run's folder and ports, on loopback, and tracing on for requests that come with
    a sampled `traceparent` (sampling ratio 0 for the rest: the load is not traced)."""
    config = yaml.safe_load(source.read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": http_port}
    config["tracing_config"] = {
        "enabled": True,
        "exporter_import_path": "deployments.tracing:span_processors",
        "sampling_ratio": 0.0,
    }
    app = config["applications"][0]
    app.setdefault("runtime_env", {}).setdefault("env_vars", {})["GRAPHRAG_TRACE_DIR"] = str(trace_dir)
    args = app["args"]
    args["data_dir"] = str(data_dir)
    args.setdefault("graph", {})["embedded_port"] = quiet_port()
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


async def node_kill(
    view: ClusterView,
    worker: RayNode,
    head_id: str,
    base: str,
    concurrency: int,
    before_s: float,
    after_max_s: float,
    settle_s: float,
) -> dict:
    load = Load(base, concurrency)
    runner = asyncio.create_task(load.run())
    await asyncio.sleep(before_s)
    killed_at = time.monotonic()
    killed = worker.kill()
    recovery_s = node_dead_s = replicas_gone_s = None
    while time.monotonic() - killed_at < after_max_s:
        since = round(time.monotonic() - killed_at, 1)
        if node_dead_s is None and await asyncio.to_thread(lambda: len(view.alive_nodes()) == 1):
            node_dead_s = since
        if replicas_gone_s is None and await asyncio.to_thread(view.only_on, {head_id}):
            replicas_gone_s = since
        if await asyncio.to_thread(view.healthy_on, {head_id}):
            recovery_s = since
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(settle_s)  # keep the load on a while after recovery: nothing should fail any more
    load.stop()
    await runner
    after = [r for r in load.records if r["sent"] >= killed_at]
    return {
        **summarize(load.records),
        "recovery_s": recovery_s,
        "node_seen_dead_s": node_dead_s,  # Ray's GCS marked the node DEAD (health checks)
        "replicas_off_lost_node_s": replicas_gone_s,  # Serve lists no replica on it any more
        "last_degraded_sent_s": round(max((r["sent"] - killed_at for r in after if r["degraded"]), default=0), 1),
        "load_before_kill_s": before_s,
        "after_kill": summarize(after),
        "failed_after_recovery": sum(
            1 for r in after if recovery_s and r["sent"] >= killed_at + recovery_s and r["status"] != 200
        ),
        "killed": killed,
        "concurrency": concurrency,
    }


async def rejoin_scale_up(
    view: ClusterView, names: dict[str, str], new_id: str, base: str, concurrency: int, duration_s: float
) -> dict:
    """A load step after the node rejoined: the replicas autoscaling adds, where they land, and the rejoined node's
    proxy (Serve runs one on the head and on every node that has a replica)."""
    load = Load(base, concurrency)
    runner = asyncio.create_task(load.run())
    started = time.monotonic()
    first_on_new_s = proxy_s = None
    while time.monotonic() - started < duration_s:
        placed = await asyncio.to_thread(view.replicas_by_node, names)
        if first_on_new_s is None and any(c.get("rejoined", 0) for c in placed.values()):
            first_on_new_s = round(time.monotonic() - started, 1)
        proxies = await asyncio.to_thread(lambda: view.serve().get("proxies", {}))
        if proxy_s is None and proxies.get(new_id, {}).get("status") == "HEALTHY":
            proxy_s = round(time.monotonic() - started, 1)
        await asyncio.sleep(1)
    placed = await asyncio.to_thread(view.replicas_by_node, names)
    load.stop()
    await runner
    return {
        "replicas_by_node": placed,
        "first_replica_on_rejoined_node_s": first_on_new_s,
        "rejoined_proxy_healthy_s": proxy_s,
        "load": summarize(load.records),
        "concurrency": concurrency,
        "duration_s": duration_s,
    }


def trace_across_nodes(view: ClusterView, names: dict[str, str], port: int, trace_dir: Path, tries: int = 6) -> dict:
    """Traced /v1/answer requests through `port` until one crosses nodes (replicas are picked per call, so a request
    may stay on one node): its spans by deployment and node, and how many requests it took."""
    for attempt in range(1, tries + 1):
        trace = one_trace(view, names, port, trace_dir)
        nodes = {n for where in trace["replica_spans_by_deployment"].values() for n in where}
        if len(nodes) > 1 or attempt == tries:
            return {**trace, "requests_sent": attempt}
    raise AssertionError("unreachable")


def one_trace(view: ClusterView, names: dict[str, str], port: int, trace_dir: Path) -> dict:
    """One traced /v1/answer (a sampled client `traceparent`) through `port`: its spans by deployment and node."""
    from deployments.tracing import read_spans

    trace_id = os.urandom(16).hex()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/answer",
        json.dumps(payload(0)).encode(),
        {"content-type": "application/json", "traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        request_id = resp.headers["x-request-id"]
    where = view.replica_nodes_by_pid()
    spans: list[dict] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        spans = [s for s in read_spans(trace_dir) if s["trace_id"] == trace_id]
        if {"Ingress", "Vector", "Embedder", "Graph", "Reranker", "Chat"} <= {
            s["attributes"].get("deployment") for s in spans
        }:
            break
        time.sleep(1)
    nodes_by_deployment: dict[str, set[str]] = {}
    for span in spans:
        deployment, node = where.get(span["pid"], ("?", ""))
        if span["name"].startswith("replica_handle_request"):
            nodes_by_deployment.setdefault(deployment, set()).add(names.get(node, node[:8]))
    return {
        "trace_id": trace_id,
        "request_id": request_id,
        "spans": len(spans),
        "request_id_on_replica_spans": all(
            s["attributes"].get("request_id") == request_id
            for s in spans
            if s["name"].startswith("replica_handle_request")
        ),
        "replica_spans_by_deployment": {k: sorted(v) for k, v in sorted(nodes_by_deployment.items())},
    }


def per_proxy(ports: dict[str, int], n: int) -> dict:
    out = {}
    for name, port in ports.items():
        ok = 0
        for i in range(n):
            try:
                body = post_json(f"http://127.0.0.1:{port}/v1/answer", payload(i), timeout=60)
                ok += bool(body.get("answer"))
            except Exception:
                pass
        out[name] = {"port": port, "sent": n, "answered": ok}
    return out


def main() -> None:
    parser = harness.cli(__doc__)
    parser.add_argument("--config", default=str(ROOT / "configs" / "cluster-embedded.yaml"))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--before-kill-s", type=float, default=30)
    parser.add_argument("--after-max-s", type=float, default=120)
    parser.add_argument("--settle-s", type=float, default=15)
    parser.add_argument("--rejoin-concurrency", type=int, default=12)
    parser.add_argument("--rejoin-s", type=float, default=60)
    parser.add_argument("--out", default=str(RESULTS / "cluster.json"))
    parser.add_argument("--keep", action="store_true", help="keep the run's temporary folder (logs) afterwards")
    opts = parser.parse_args()

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="graphrag-cluster-"))
    env = {
        **os.environ,
        **LOCAL_ENV,
        **throughput_env(),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        # The head's fallback proxy defaults to fixed ports another Serve on this machine may hold.
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(quiet_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(quiet_port()),
        # How soon the GCS declares a silent node dead: every 1 s, 5 misses (Ray's default: every 3 s, 5 misses).
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "5",
    }
    nodes: list[RayNode] = []
    node_ids: list[str] = []
    result: dict = {
        "command": harness.command(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1m_before": round(os.getloadavg()[0], 2),
    }
    try:
        head, head_id, attempts = start_head(tmp, env, nodes)
        result["node_start_attempts"] = {"head": attempts}
        dashboard = f"http://127.0.0.1:{head.dashboard_port}"
        view = ClusterView(dashboard)
        worker_env = node_env(env, worker=True)
        worker, worker_id, attempts = start_worker(
            view, "worker", tmp, worker_env, f"127.0.0.1:{head.gcs_port}", {head_id}, nodes
        )
        ids = {"head": head_id, "worker": worker_id}
        result["node_start_attempts"]["worker"] = attempts
        names = {v: k for k, v in ids.items()}
        node_ids.extend(ids.values())

        http_port = quiet_port()
        config = cluster_config(Path(opts.config), tmp / "cluster.yaml", tmp / "data", http_port, tmp / "spans")
        t0 = time.monotonic()
        subprocess.run(
            [str(Path(sys.executable).with_name("serve")), "deploy", str(config), "--address", dashboard],
            env=env,
            check=True,
            cwd=ROOT,
        )
        wait_for("app running on both nodes", lambda: view.healthy_on(set(ids.values())), 420, every_s=2)
        result["deploy_s"] = round(time.monotonic() - t0, 1)
        base = f"http://127.0.0.1:{http_port}"
        proxy_ports = {"head": http_port, "worker": int(worker_env["RAY_SERVE_WORKER_PROXY_HTTP_PORT"])}
        wait_for(
            "both proxies", lambda: all(get_json(f"http://127.0.0.1:{p}/healthz", 5) for p in proxy_ports.values()), 120
        )

        documents = [
            {"id": p.stem, "text": p.read_text(), "metadata": {"source": p.name}}
            for p in sorted((ROOT / "configs" / "sample").glob("*.md"))
        ]
        ingest = post_json(f"{base}/v1/ingest", {"collection": COLLECTION, "documents": documents}, timeout=600)
        result["nodes"] = {
            name: {"node_id": node_id, "cpus": 1, "resources": {"graphrag_store": 1} if name == "head" else {}}
            for name, node_id in ids.items()
        }
        result["replicas_by_node"] = view.replicas_by_node(names)
        result["proxies"] = {names.get(k, k): v["status"] for k, v in view.serve().get("proxies", {}).items()}
        result["answered_by_proxy"] = per_proxy(proxy_ports, 10)
        result["trace"] = trace_across_nodes(view, names, proxy_ports["worker"], tmp / "spans")
        points_before = get_json(f"{base}/v1/collections/{COLLECTION}")
        print(
            json.dumps({k: result[k] for k in ("replicas_by_node", "proxies", "answered_by_proxy", "trace")}, indent=1),
            flush=True,
        )

        kill = asyncio.run(
            node_kill(
                view, worker, ids["head"], base, opts.concurrency, opts.before_kill_s, opts.after_max_s, opts.settle_s
            )
        )
        points_after = get_json(f"{base}/v1/collections/{COLLECTION}")
        kill.update(
            points_before=points_before["points"],
            points_after=points_after["points"],
            collection_before=points_before,
            collection_after=points_after,
            ingested=ingest,
        )
        result["node_kill"] = kill
        result["replicas_after_kill"] = view.replicas_by_node(names)
        print(json.dumps(kill, indent=1), flush=True)
        harness.write_json(Path(opts.out), {**result, "incomplete": "rejoin phase not run yet"})

        rejoined, new_id, attempts = start_worker(
            view, "rejoined", tmp, worker_env, f"127.0.0.1:{head.gcs_port}", set(ids.values()), nodes
        )
        result["node_start_attempts"]["rejoined"] = attempts
        names[new_id] = "rejoined"
        node_ids.append(new_id)
        scale = asyncio.run(rejoin_scale_up(view, names, new_id, base, opts.rejoin_concurrency, opts.rejoin_s))
        if scale["rejoined_proxy_healthy_s"] is not None:
            scale["answered_by_rejoined_proxy"] = per_proxy({"rejoined": proxy_ports["worker"]}, 5)["rejoined"]
        result["rejoin"] = scale
        result["rejoined_replicas"] = sum(c.get("rejoined", 0) for c in scale["replicas_by_node"].values())
        result["wall_s"] = round(time.monotonic() - started, 1)
        result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
        harness.write_json(Path(opts.out), result)
        print(json.dumps(scale, indent=1), flush=True)
        print(f"wrote {opts.out}", flush=True)
    finally:
        for node in reversed(nodes):
            node.stop()
        left = [pid for node in nodes for pid in session_pids(node.sid)] if all(n.proc for n in nodes) else []
        if left:
            print(f"processes still alive: {left}", file=sys.stderr)
        for node_id in node_ids:  # HAProxy's per-node folders (config, admin socket), named by node id
            shutil.rmtree(Path("/tmp/haproxy-serve") / node_id, ignore_errors=True)
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    main()
