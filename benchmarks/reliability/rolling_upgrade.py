"""Rolling upgrades under load: changed configs applied with `serve deploy` (Serve's REST API on the dashboard, as
users do) one after another while closed-loop clients ask questions.

    flock /tmp/graphrag-heavy.lock python -m benchmarks.reliability.rolling_upgrade [--concurrency 8]

A Ray head started with `ray start` (its dashboard serves Serve's REST API), `serve deploy` of configs/local.yaml
(data folder and ports rewritten into a temporary copy), the sample corpus ingested, then /v1/answer in the default
mode at c=8 throughout. The changes, each config keeping the ones before it:

  reranker          `dense_weight` 0.7 → 0.6 as the Reranker's Serve `user_config` (its `reconfigure`): a
                    lightweight update, applied live, no replica replaced.
  graph_autoscaling the Graph deployment's autoscaling bounds 1..2 → 2..3 in the Serve `deployments:` override the
                    base config already carries: a lightweight update (no replica replaced, one added).
  ingress_version   a new Ingress version: `ray_actor_options.runtime_env.env_vars.GRAPHRAG_RELEASE` set for the
                    Ingress only: its replicas are replaced, the others kept.
  reranker_via_args `args.reranker.dense_weight` → 0.5. The app's `args` are part of Serve's code version: the app
                    is rebuilt and every replica replaced, the embedded stores' too (one owner each: no surge).

Per change: requests answered from the `serve deploy` until the new version was everywhere and 10 s after, `failed`
(non-200), `degraded` (a 200 without some stage), p95, `seconds_to_new_version` (Serve's status API: the app
RUNNING, every deployment HEALTHY at its target, and each replica that had to be replaced started after the
deploy), and which replicas were replaced. Results: benchmarks/results/rolling_upgrade.json.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import yaml

from benchmarks import harness
from benchmarks.cluster.cluster_view import ClusterView, get_json, post_json, wait_for
from benchmarks.cluster.ray_nodes import RayNode, node_env, session_pids
from benchmarks.harness import QUERIES, ROOT, quiet_port
from benchmarks.loadgen import Sample, closed_loop, outcomes, percentile
from deployments.local_env import LOCAL_ENV
from deployments.throughput import throughput_env

COLLECTION = "upgrade"
Check = Callable[[dict], bool]
ALL = ("Ingress", "Embedder", "Vector", "BoltServer", "Graph", "Reranker", "Chat")


def _override(config: dict, name: str) -> dict:
    """The application's Serve `deployments:` entry of deployment `name` (made if missing)."""
    entries = config["applications"][0].setdefault("deployments", [])
    entry = next((d for d in entries if d["name"] == name), None)
    if entry is None:
        entry = {"name": name}
        entries.append(entry)
    return entry


def change_reranker(config: dict) -> tuple[tuple[str, ...], Check]:
    _override(config, "Reranker")["user_config"] = {"dense_weight": 0.6}
    return (
        (),
        lambda app: app["deployments"]["Reranker"]["deployment_config"].get("user_config") == {"dense_weight": 0.6},
    )


def change_graph_autoscaling(config: dict) -> tuple[tuple[str, ...], Check]:
    _override(config, "Graph")["autoscaling_config"].update(min_replicas=2, max_replicas=3)
    return (), lambda app: len(app["deployments"]["Graph"]["replicas"]) >= 2


def change_ingress_version(config: dict) -> tuple[tuple[str, ...], Check]:
    env = {"env_vars": {"GRAPHRAG_RELEASE": "2"}}
    _override(config, "Ingress")["ray_actor_options"] = {"num_cpus": 0, "runtime_env": env}
    return ("Ingress",), bool


def change_reranker_via_args(config: dict) -> tuple[tuple[str, ...], Check]:
    config["applications"][0]["args"].setdefault("reranker", {})["dense_weight"] = 0.5
    return ALL, bool


CHANGES = {
    "reranker": change_reranker,
    "graph_autoscaling": change_graph_autoscaling,
    "ingress_version": change_ingress_version,
    "reranker_via_args": change_reranker_via_args,
}


def base_config(data_dir: Path, http_port: int) -> dict:
    config = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": http_port}
    args = config["applications"][0]["args"]
    args["data_dir"] = str(data_dir)
    args.setdefault("graph", {})["embedded_port"] = quiet_port()
    args.setdefault("embedder", {})["cache_dir"] = str(harness.CACHE / "models")
    # The Graph deployment's autoscaling bounds as Serve's own override (the same values as the app's args): the
    # first such override changes Serve's code version (every replica replaced), later edits of it do not.
    graph_scaling = copy.deepcopy(args["deployments"]["graph"]["autoscaling_config"])
    config["applications"][0]["deployments"] = [{"name": "Graph", "autoscaling_config": graph_scaling}]
    return config


def upgrade_env() -> dict[str, str]:
    """The environment of `ray start` and `serve deploy`: the app's data plane, this checkout on the path, and free
    ports for the listeners that default to fixed numbers."""
    return {
        **os.environ,
        **LOCAL_ENV,
        **throughput_env(),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(quiet_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(quiet_port()),
    }


def serve_deploy(config: dict, path: Path, dashboard: str, env: dict) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    serve = str(Path(sys.executable).with_name("serve"))
    subprocess.run([serve, "deploy", str(path), "--address", dashboard], env=env, check=True, cwd=ROOT)


def replicas(view: ClusterView) -> dict[str, list[dict]]:
    app = view.app() or {"deployments": {}}
    return {name: d["replicas"] for name, d in app["deployments"].items()}


def on_new_version(view: ClusterView, since: float, replaced: tuple[str, ...], check) -> bool:
    """The app RUNNING, every deployment HEALTHY with its target of RUNNING replicas and nothing else, each replica
    of the `replaced` deployments started after `since` (wall clock), and `check(app)` for a lightweight change."""
    app = view.app()
    if not app or app["status"] != "RUNNING":
        return False
    for name, d in app["deployments"].items():
        running = [r for r in d["replicas"] if r["state"] == "RUNNING"]
        if d["status"] != "HEALTHY" or len(running) != len(d["replicas"]):
            return False
        if len(running) < max(1, d.get("target_num_replicas") or 1):
            return False
        if name in replaced and any(r["start_time_s"] < since for r in running):
            return False
    return check(app)


class Load:
    """Closed-loop clients in back-to-back 5 s windows until stopped (a window's samples are all kept)."""

    def __init__(self, url: str, concurrency: int):
        self.url, self.concurrency = url, concurrency
        self.samples: list[tuple[float, Sample]] = []  # (wall clock at send, sample)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def payload(self, n: int) -> dict:
        return {"collection": COLLECTION, "query": QUERIES[n % len(QUERIES)], "top_k": 5}

    async def _run(self) -> None:
        while not self.stop.is_set():
            offset = time.time() - time.monotonic()
            run = await closed_loop(self.url, self.payload, self.concurrency, 10**6, timeout_s=60, max_wall_s=5)
            self.samples.extend((s.intended + offset, s) for s in run.samples)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for t, s in list(self.samples) if start <= t < end]


def summarize(samples: list[Sample]) -> dict:
    ok = sorted(s.latency for s in samples if s.status == 200)
    counts = outcomes(samples)
    n = len(samples)
    return {
        "requests": n,
        **counts,
        "degraded_share": round(counts["degraded"] / n, 4) if n else None,
        "p95_ms": round(percentile(ok, 95) * 1000, 1) if ok else None,
        "status": dict(Counter(str(s.status) for s in samples)),
        "degraded_stages": dict(Counter(stage for s in samples for stage in s.degraded or [])),
    }


def apply_change(name, change, config, view, load, tmp, dashboard, env, settle_s, timeout_s) -> dict:
    before = {d: {r["replica_id"] for r in rs} for d, rs in replicas(view).items()}
    replaced, check = change(config)
    since = time.time()
    serve_deploy(config, tmp / f"{name}.yaml", dashboard, env)
    wait_for(f"{name} on every replica", lambda: on_new_version(view, since, replaced, check), timeout_s, every_s=0.5)
    seconds = round(time.time() - since, 1)
    time.sleep(settle_s)
    after = {d: {r["replica_id"] for r in rs} for d, rs in replicas(view).items()}
    out = summarize(load.between(since, time.time()))
    out.update(
        seconds_to_new_version=seconds,
        replicas_replaced={d: len(before.get(d, set()) - ids) for d, ids in after.items()},
        replicas_added={d: len(ids - before.get(d, set())) for d, ids in after.items()},
    )
    return out


def main() -> None:
    parser = harness.cli(__doc__)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--before-s", type=float, default=15, help="load before the first change (the baseline)")
    parser.add_argument("--settle-s", type=float, default=10, help="load kept after each change is everywhere")
    parser.add_argument("--timeout-s", type=float, default=240, help="longest wait for a change to be everywhere")
    parser.add_argument("--keep", action="store_true", help="keep the run's temporary folder (logs)")
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="graphrag-upgrade-"))
    env = upgrade_env()
    result: dict = {"command": harness.command(), "date": harness.utc_now(), "concurrency": opts.concurrency}
    result["load_average_1m_start"] = round(os.getloadavg()[0], 2)
    head = RayNode("head", tmp / "head", node_env(env, worker=False), num_cpus=2)
    load = None
    try:
        head.start(tmp / "head.log")
        dashboard = f"http://127.0.0.1:{head.dashboard_port}"
        view = ClusterView(dashboard)
        wait_for("the head node", lambda: view.alive_nodes(), 180)
        http_port = quiet_port()
        config = base_config(tmp / "data", http_port)
        t0 = time.time()
        serve_deploy(config, tmp / "base.yaml", dashboard, env)
        wait_for("the app", lambda: on_new_version(view, 0, (), bool), 420, every_s=1)
        result["first_deploy_s"] = round(time.time() - t0, 1)
        base = f"http://127.0.0.1:{http_port}"
        documents = [
            {"id": p.stem, "text": p.read_text(), "metadata": {"source": p.name}}
            for p in sorted((ROOT / "configs" / "sample").glob("*.md"))
        ]
        post_json(f"{base}/v1/ingest", {"collection": COLLECTION, "documents": documents}, timeout=600)
        load = Load(f"{base}/v1/answer", opts.concurrency)
        load.thread.start()
        started = time.time()
        time.sleep(opts.before_s)
        result["before"] = summarize(load.between(started, time.time()))
        result["changes"] = {}
        for name, change in CHANGES.items():
            result["changes"][name] = out = apply_change(
                name, change, config, view, load, tmp, dashboard, env, opts.settle_s, opts.timeout_s
            )
            print(name, json.dumps(out), flush=True)
        result["total"] = summarize(load.between(started, time.time()))
        result["collection_after"] = get_json(f"{base}/v1/collections/{COLLECTION}")
    finally:
        if load is not None:
            load.stop.set()
            load.thread.join(30)
        result["load_average_1m_end"] = round(os.getloadavg()[0], 2)
        harness.write_json("rolling_upgrade.json", result)
        head.stop()
        left = session_pids(head.sid) if head.proc else []
        if left:
            print(f"processes still alive: {left}", file=sys.stderr)
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
