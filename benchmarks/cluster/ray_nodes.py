"""Ray nodes as separate raylets on this machine, started with `ray start` as a user would, for the cluster
benchmark. Each node is its own session (`setsid`): its processes are found by session id, so a node can be
killed as a whole (a lost machine) and every process it started is stopped afterwards, by pid, and nothing else.

Several raylets on one host share its addresses, so every port a node would take by default is given explicitly
(free ports), including Serve's per-node listeners that default to fixed numbers (HAProxy stats/metrics, the
fallback proxy; a worker node's HTTP proxy port via RAY_SERVE_WORKER_PROXY_HTTP_PORT).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import quiet_port

OBJECT_STORE_BYTES = 150_000_000


def session_pids(sid: int) -> list[int]:
    """Every live process of session `sid` (processes keep their session when their parent dies)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp session ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class RayNode:
    """One `ray start --block` raylet with its own temp folder and ports."""

    name: str
    temp_dir: Path
    env: dict[str, str]
    head_address: str | None = None  # None: this is the head
    num_cpus: float = 1
    resources: dict[str, float] = field(default_factory=dict)
    gcs_port: int = 0
    dashboard_port: int = 0
    proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        ports = {
            "node_manager_port": quiet_port(),
            "object_manager_port": quiet_port(),
            "metrics_export_port": quiet_port(),
            "dashboard_agent_listen_port": quiet_port(),
            "metrics_agent_port": quiet_port(),  # `ray start --dashboard-agent-grpc-port`
            "runtime_env_agent_port": quiet_port(),
        }
        if self.head_address is not None:
            # A worker node joins through the call `ray start --address` ends in (see `join`): with
            # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 that command refuses to join, with =1 it swaps 127.0.0.1 for the
            # host's network address. Everything else is `ray start`'s.
            params = {
                "gcs_address": self.head_address,
                "node_ip_address": "127.0.0.1",
                "num_cpus": self.num_cpus,
                "resources": self.resources,
                "temp_dir": str(self.temp_dir),
                "object_store_memory": OBJECT_STORE_BYTES,
                **ports,
            }
            return [sys.executable, "-m", "benchmarks.cluster.ray_nodes", "join", json.dumps(params)]
        ray = str(Path(sys.executable).with_name("ray"))
        flags = {
            "node-manager-port": ports["node_manager_port"],
            "object-manager-port": ports["object_manager_port"],
            "metrics-export-port": ports["metrics_export_port"],
            "dashboard-agent-listen-port": ports["dashboard_agent_listen_port"],
            "dashboard-agent-grpc-port": ports["metrics_agent_port"],
            "runtime-env-agent-port": ports["runtime_env_agent_port"],
        }
        self.gcs_port = self.gcs_port or quiet_port()
        self.dashboard_port = self.dashboard_port or quiet_port()
        cmd = [
            ray,
            "start",
            "--head",
            "--block",
            "--disable-usage-stats",
            "--node-ip-address=127.0.0.1",
            f"--port={self.gcs_port}",
            f"--num-cpus={self.num_cpus}",
            f"--temp-dir={self.temp_dir}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--ray-client-server-port={quiet_port()}",
            # The dashboard serves Serve's REST API, which `serve deploy` and the status reads use.
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            *(f"--{k}={v}" for k, v in flags.items()),
        ]
        if self.resources:
            cmd.append(f"--resources={json.dumps(self.resources)}")
        return cmd

    def start(self, log: Path) -> None:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")
        self.proc = subprocess.Popen(
            self.command(), env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def sid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def raylet_pid(self) -> int | None:
        return next((p for p in session_pids(self.sid) if "/raylet/raylet " in process_name(p)), None)

    def kill(self) -> dict:
        """Node loss: SIGKILL the raylet first, then every other process of the node at once."""
        raylet = self.raylet_pid()
        pids = session_pids(self.sid)
        if raylet:
            os.kill(raylet, signal.SIGKILL)
        for pid in pids:
            if pid != raylet:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.wait_gone()
        return {"raylet_pid": raylet, "processes_killed": len(pids)}

    def wait_gone(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while session_pids(self.sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> None:
        """SIGTERM then SIGKILL to this node's own processes only (never `ray stop`: it stops every Ray here)."""
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            for pid in session_pids(self.sid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while session_pids(self.sid) and time.monotonic() < deadline:
                time.sleep(0.2)
        self.wait_gone(5)


def node_env(base: dict[str, str], worker: bool) -> dict[str, str]:
    """Per-node Serve listener ports (all of them default to fixed numbers that a second node here would take)."""
    env = dict(base)
    # On a busy shared machine a node's agents can take minutes to come up; Ray's defaults give up sooner.
    env.setdefault("RAY_agent_register_timeout_ms", "300000")
    env.setdefault("RAY_raylet_start_wait_time_s", "300")
    env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(quiet_port())
    env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(quiet_port())
    if worker:
        env["RAY_SERVE_WORKER_PROXY_HTTP_PORT"] = str(quiet_port())
        env["RAY_SERVE_WORKER_PROXY_GRPC_PORT"] = str(quiet_port())
    return env


def join(params: dict) -> None:
    """`ray start --address=... --block` for a node on 127.0.0.1: the same Node, kept until a signal ends it."""
    import ray._private.node
    from ray._private.parameter import RayParams

    ray_params = RayParams(**params, include_log_monitor=True)
    node = ray._private.node.Node(ray_params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    print(f"joined {params['gcs_address']} as node {node.node_id}", flush=True)

    def stop(signum, frame):
        node.kill_all_processes(check_alive=False, allow_graceful=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1:2] == ["join"]:
        join(json.loads(sys.argv[2]))
