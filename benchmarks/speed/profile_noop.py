"""Where the CPU of a request goes: py-spy flame graphs of the ingress and one stage replica while the no-op graph
(SIMULATED zero-latency stages, `mode: hybrid+graph`) is under closed-loop load, plus CPU-ms per request by process.

    python -m benchmarks.speed.profile_noop                                  # Serve's fast path, as shipped
    GRAPHRAG_SERVE_THROUGHPUT=0 python -m benchmarks.speed.profile_noop      # Ray Serve's default data plane

Writes benchmarks/results/flame-<plane>-ingress.svg, flame-<plane>-stage.svg and profile-<plane>.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import harness, use_local_env
from benchmarks.harness import RESULTS
from benchmarks.loadgen import closed_loop, cpu_ms_per_request, process_cpu


def main() -> None:
    harness.cli(__doc__).parse_args()
    use_local_env()  # before reading the data plane below
    from benchmarks.speed.performance import _wait, payload
    from benchmarks.speed.simulated import Latencies, build_serve_app

    plane = "fast-path" if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "default-plane"
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    with harness.ray_session():
        url = harness.deploy(build_serve_app(Latencies.zero()), "profile")
        _wait(url)
        asyncio.run(closed_loop(f"{url}/v1/answer", payload, 50, 500))  # warm
        targets = {"ingress": "ServeReplica:profile:Ingress", "stage": "ServeReplica:profile:SimulatedChat"}
        pids = {
            name: next(pid for pid, (cmd, _) in process_cpu().items() if title in cmd)
            for name, title in targets.items()
        }
        spies = [
            subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    "20",
                    "--rate",
                    "100",
                    "--nonblocking",
                    "--format",
                    "flamegraph",
                    "--output",
                    str(RESULTS / f"flame-{plane}-{name}.svg"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
        ]
        before = process_cpu()
        run = asyncio.run(closed_loop(f"{url}/v1/answer", payload, 50, 100_000, max_wall_s=20, ramp_s=1.0))
        cpu = cpu_ms_per_request(before, process_cpu(), len(run.samples) + run.extra_ok)
        for spy in spies:
            spy.wait(timeout=120)
    summary = run.summary()
    out = {
        "plane": plane,
        "qps": summary["qps"],
        "p50_ms": summary["p50_ms"],
        "cpu_ms_per_request": round(sum(cpu.values()), 2),
        "cpu_ms_by_process": cpu,
        "flame_graphs": [f"flame-{plane}-{name}.svg" for name in targets],
        "command": f"{'GRAPHRAG_SERVE_THROUGHPUT=0 ' if plane == 'default-plane' else ''}python -m benchmarks.speed.profile_noop",
    }
    harness.write_json(f"profile-{plane}.json", out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
