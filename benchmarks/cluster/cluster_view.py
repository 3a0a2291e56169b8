"""The two-node cluster as Ray and Serve report it (the dashboard's REST API), and nodes started until ALIVE."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path

from benchmarks.cluster.ray_nodes import RayNode, node_env

APP = "graphrag"


def get_json(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: dict, timeout: float = 300) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


class ClusterView:
    """Serve's own status (the dashboard's REST API) and Ray's node list."""

    def __init__(self, dashboard: str):
        self.dashboard = dashboard

    def serve(self) -> dict:
        return get_json(f"{self.dashboard}/api/serve/applications/")

    def nodes(self) -> list[dict]:
        return get_json(f"{self.dashboard}/api/v0/nodes")["data"]["result"]["result"]

    def alive_nodes(self) -> list[dict]:
        return [n for n in self.nodes() if n["state"] == "ALIVE"]

    def app(self) -> dict | None:
        return self.serve().get("applications", {}).get(APP)

    def replicas_by_node(self, names: dict[str, str]) -> dict[str, dict[str, int]]:
        """Running replicas per deployment and node (nodes named by `names`: node id → "head"/"worker"/...)."""
        app = self.app() or {"deployments": {}}
        out = {}
        for deployment, details in sorted(app["deployments"].items()):
            counts = Counter(
                names.get(r.get("node_id", ""), (r.get("node_id") or "?")[:8])
                for r in details["replicas"]
                if r["state"] == "RUNNING"
            )
            out[deployment] = dict(sorted(counts.items()))
        return out

    def only_on(self, node_ids: set[str]) -> bool:
        """No replica, in any state, listed on a node outside `node_ids`."""
        app = self.app() or {"deployments": {}}
        return all(
            r.get("node_id") in node_ids for d in app["deployments"].values() for r in d["replicas"] if r.get("node_id")
        )

    def replica_nodes_by_pid(self) -> dict[int, tuple[str, str]]:
        """Replica process id → (deployment, node id)."""
        app = self.app() or {"deployments": {}}
        return {
            r["pid"]: (name, r.get("node_id", ""))
            for name, d in app["deployments"].items()
            for r in d["replicas"]
            if r.get("pid")
        }

    def healthy_on(self, node_ids: set[str]) -> bool:
        """The app RUNNING, every deployment HEALTHY with its target of RUNNING replicas, all on `node_ids`."""
        app = self.app()
        if not app or app["status"] != "RUNNING":
            return False
        for details in app["deployments"].values():
            running = [r for r in details["replicas"] if r["state"] == "RUNNING"]
            if details["status"] != "HEALTHY" or any(r.get("node_id") not in node_ids for r in running):
                return False
            if len(running) < max(1, details.get("target_num_replicas") or 1):
                return False
        return True


def wait_for(what: str, check, timeout_s: float, every_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the dashboard or the app still starting: retry until the deadline
            last_error = exc
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f}s (last error: {last_error!r})")


def start_head(tmp: Path, env: dict[str, str], nodes: list[RayNode], attempts: int = 3) -> tuple[RayNode, str, int]:
    """`ray start --head` until its node is ALIVE (on a busy machine its raylet may give up on its dashboard agent)."""
    for attempt in range(1, attempts + 1):
        head = RayNode(
            "head", tmp / f"head-{attempt}", node_env(env, worker=False), num_cpus=1, resources={"graphrag_store": 1}
        )
        nodes.append(head)
        head.start(tmp / f"head-{attempt}.log")
        view = ClusterView(f"http://127.0.0.1:{head.dashboard_port}")
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and head.proc.poll() is None:
            try:
                alive = [n["node_id"] for n in view.alive_nodes() if n["is_head_node"]]
            except Exception:  # the dashboard is not up yet
                alive = []
            if alive and head.raylet_pid():
                return head, alive[0], attempt
            time.sleep(1)
        head.stop()
    raise RuntimeError(f"no head node in {attempts} attempts (logs under {tmp})")


def start_worker(
    view: ClusterView,
    name: str,
    tmp: Path,
    env: dict[str, str],
    head_gcs: str,
    known: set[str],
    nodes: list[RayNode],
    attempts: int = 3,
) -> tuple[RayNode, str, int]:
    """Starts a worker node and returns it with its node id once ALIVE. On a busy machine a raylet sometimes gives up
    waiting for its dashboard agent (a hard-coded 15 s) and exits: then it is started again, at most `attempts` times."""
    for attempt in range(1, attempts + 1):
        node = RayNode(name, tmp / f"{name}-{attempt}", env, head_address=head_gcs, num_cpus=1)
        nodes.append(node)
        node.start(tmp / f"{name}-{attempt}.log")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and node.proc.poll() is None:
            new = [n["node_id"] for n in view.alive_nodes() if n["node_id"] not in known]
            if new:
                return node, new[0], attempt
            time.sleep(1)
        node.stop()
    raise RuntimeError(f"{name}: no node joined in {attempts} attempts (logs under {tmp})")
