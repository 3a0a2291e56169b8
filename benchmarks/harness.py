"""What every benchmark does the same way: start Ray on loopback, deploy an app, send load, write the results.

- `local_app(args, name)`: the real app (`graph.build_app`) behind Serve's HTTP ingress on a free loopback port,
  stopped with Ray afterwards, also when the block fails. `ray_session()` + `deploy(app, name)` do the same for any
  Serve application (the simulated stages, an app from a Serve config: `serve_config_app`).
- Load: `benchmarks.loadgen` (closed loop, open loop, CPU per process); `closed_loop_levels` sweeps concurrencies.
- Results: `write_json` and `save_figure` under `benchmarks/results/` (the paths the READMEs link), `utc_now` for
  the `date` each result carries.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployments.local_env import use_local_env

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ROOT.parent / "shared" / "datasets"  # /work/shared/datasets, never copied into the repo
CACHE = ROOT / "benchmarks" / ".cache"  # built corpora and embeddings (git-ignored)

# Listener ports are drawn from here: below Linux's ephemeral range (32768+, where a port free now may be taken by
# an outgoing connection minutes later) and above Ray's worker ports (10002-19999); Serve's direct-ingress ports are
# 30000-31000.
QUIET_PORTS = range(21000, 29000)

__all__ = [
    "CACHE", "DATASETS", "RESULTS", "ROOT", "cli", "closed_loop_levels", "command", "deploy", "local_app",
    "pyplot", "quiet_port", "ray_session", "save_figure", "serve_config_app", "start_ray", "utc_now", "write_json",
]  # fmt: skip


# Questions about the sample corpus (configs/sample/), cycled by the load of the cluster and fault-tolerance runs.
QUERIES = [
    "Which database ships a Bolt protocol plugin?",
    "What does Qdrant Edge embed?",
    "How does Ray Serve scale?",
    "What is reciprocal rank fusion?",
    "Which model embeds the passages?",
    "What is GraphRAG?",
]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _main_module() -> str | None:
    """The module run with `python -m`; a benchmark split into a package runs as `<package>.__main__`."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return spec.name.removesuffix(".__main__") if spec is not None else None


def cli(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line, its module docstring as the help (so `--help` shows how to run it)."""
    module = _main_module()
    prog = module.rsplit(".", 1)[-1] + ".py" if module and sys.argv[0].endswith("__main__.py") else None
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def command() -> str:
    """How this run was started, for the `command` each result records: `python -m benchmarks.<group>.<name> ...`."""
    main = sys.modules["__main__"]
    module = _main_module()
    target = f"-m {module}" if module is not None else os.path.relpath(getattr(main, "__file__", "?"), ROOT)
    return f"python {target} {shlex.join(sys.argv[1:])}".rstrip()


MACHINE_PROBE = (
    "import time\nt = time.perf_counter()\nsum(i * i for i in range(300_000))\nprint(time.perf_counter() - t)"
)


def machine_probe_ms() -> float:
    """Wall ms of one fixed piece of pure-Python work in a process of its own (start-up not counted): the
    machine's speed of the moment, for telling a drift of the app from a drift of this shared 2-core box."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", MACHINE_PROBE], capture_output=True, text=True, check=True)
    return round(float(out.stdout) * 1000, 2)


def quiet_port() -> int:
    """A loopback port that is free now and that the kernel does not hand out to outgoing connections."""
    for _ in range(200):
        port = random.choice(QUIET_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {QUIET_PORTS}")


def start_ray(attempts: int = 1, cleanup: Callable[[], None] | None = None) -> None:
    """A local Ray on loopback (no dashboard, the app's data plane: `use_local_env`). Ray gives its raylet 30 s to
    register, not always enough on a loaded machine: `attempts` > 1 retries, after `cleanup()` (e.g. stopping what
    the failed start left running)."""
    import ray

    use_local_env()
    if ray.is_initialized():
        return
    # HAProxy's stats and metrics listeners default to 8404 and 9101, which another Serve on this machine may hold
    # (its HAProxy then fails to start); Ray reads these when it starts.
    os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] = str(quiet_port())
    os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(quiet_port())
    for attempt in range(1, attempts + 1):
        try:
            ray.init(include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False)
            return
        except Exception as exc:  # Ray raises a bare Exception when its node does not come up in time
            if attempt == attempts:
                raise
            print(f"ray.init failed ({exc}); retrying", flush=True)
            ray.shutdown()
            if cleanup is not None:
                cleanup()
            time.sleep(5)


@contextmanager
def ray_session(attempts: int = 1, cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Ray for the block; Serve and Ray are shut down afterwards, also when the block fails."""
    import ray
    from ray import serve

    start_ray(attempts, cleanup)
    try:
        yield
    finally:
        try:
            serve.shutdown()
        except RuntimeError as exc:  # a handle used on a loop that asyncio.run closed ("Event loop is closed")
            print(f"serve.shutdown: {exc}; Ray's shutdown stops the replicas", flush=True)
        ray.shutdown()


def deploy(app: Any, name: str, port: int | None = None, route_prefix: str = "/", attempts: int = 1) -> str:
    """Runs a Serve application behind the HTTP ingress on loopback (in the running Ray); returns its base URL.
    Serve's proxy keeps the port of the first `deploy` in a Ray session. `attempts` > 1: Serve's proxy (HAProxy's
    manager) may miss its start timeout on a loaded machine."""
    from ray import serve

    port = port or quiet_port()
    for attempt in range(1, attempts + 1):
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(app, name=name, route_prefix=route_prefix)
            return f"http://127.0.0.1:{port}"
        except Exception as exc:
            if attempt == attempts:
                raise
            print(f"serve start failed ({type(exc).__name__}); retrying", flush=True)
            serve.shutdown()
    raise AssertionError("unreachable")


@contextmanager
def local_app(args: dict[str, Any], name: str, port: int | None = None) -> Iterator[str]:
    """The real app built from config `args`, on a free loopback port; yields its base URL."""
    from graph import build_app

    with ray_session():
        yield deploy(build_app(args), name, port)


def serve_config_app(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """The first application of a Serve config file: (its built app, its config entry)."""
    import yaml

    entry = yaml.safe_load(Path(path).read_text())["applications"][0]
    module, func = entry["import_path"].split(":")
    builder = getattr(__import__(module, fromlist=[func]), func)
    return builder(entry["args"]), entry


async def closed_loop_levels(
    url: str,
    payload: Callable[[int], dict],
    levels: list[int],
    per_level: int,
    report: Callable[[int, Any], None] | None = None,
    **options: Any,
) -> dict[int, Any]:
    """One closed-loop run per concurrency level (`loadgen.closed_loop`: at least `per_level` requests, and 2 per
    client); `report(c, run)` sees each level as it ends."""
    from benchmarks.loadgen import closed_loop

    runs = {}
    for c in levels:
        runs[c] = await closed_loop(url, payload, c, max(per_level, 2 * c), **options)
        if report is not None:
            report(c, runs[c])
    return runs


def write_json(name: str | Path, data: Any, indent: int = 2) -> Path:
    """`data` as JSON in benchmarks/results/<name> (or at a path given as a Path); returns where."""
    path = name if isinstance(name, Path) else RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent) + "\n")
    return path


def pyplot():
    """matplotlib's pyplot on the file-only backend (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, name: str | Path, dpi: int = 110) -> Path:
    path = name if isinstance(name, Path) else RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
