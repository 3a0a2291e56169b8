"""Autoscaling experiment runner: deploys a Serve config with per-stage autoscaling_config, drives its load
profile (open-loop Poisson steps), samples every deployment's replica count and the latency each second, and
writes benchmarks/results/autoscale-<profile>.json and .png.

    python -m benchmarks.speed.autoscale configs/autoscale-graph.yaml
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import aiohttp

from benchmarks import harness
from benchmarks.harness import RESULTS
from benchmarks.loadgen import percentile


async def drive(url: str, steps: list[list[float]], app_name: str, sample_every: float = 1.0) -> dict:
    """Sends Poisson arrivals per step; samples replicas per deployment and p95 of requests finished each second."""
    from ray import serve

    rng = random.Random(11)
    finished: list[tuple[float, float, int]] = []  # (end offset s, latency s, status)
    replicas: list[dict] = []
    t0 = time.monotonic()
    total = sum(d for _, d in steps)

    async def sample() -> None:
        while (now := time.monotonic() - t0) < total + 2:
            status = (await asyncio.to_thread(serve.status)).applications[app_name].deployments
            replicas.append(
                {"t": round(now, 2), **{name: d.replica_states.get("RUNNING", 0) for name, d in status.items()}}
            )
            await asyncio.sleep(sample_every)

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
    ) as session:

        async def one(n: int, at: float) -> None:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            status = 0
            try:
                async with session.post(
                    f"{url}/v1/answer", json={"query": f"autoscale question {n}", "top_k": 3, "mode": "hybrid+graph"}
                ) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError):
                pass
            end = time.monotonic() - t0
            finished.append((end, end - at, status))

        arrivals, start = [], 0.0
        for rate, duration in steps:
            t = start
            while (t := t + rng.expovariate(rate)) < start + duration:
                arrivals.append(t)
            start += duration
        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(one(n, at) for n, at in enumerate(arrivals)))
        await sampler

    seconds = int(max(e for e, _, _ in finished)) + 1 if finished else 0
    latency = []
    for s in range(seconds):
        window = sorted(lat for end, lat, st in finished if s - 4 < end <= s + 1 and st == 200)  # 5 s sliding window
        latency.append(
            {
                "t": s + 1,
                "p95_ms": round(percentile(window, 95) * 1000, 1) if window else None,
                "errors": sum(1 for end, _, st in finished if s < end <= s + 1 and st != 200),
            }
        )
    load = []
    start = 0.0
    for rate, duration in steps:
        load.append({"from": start, "to": start + duration, "rate": rate})
        start += duration
    statuses: dict[str, int] = {}
    for _, _, st in finished:
        statuses[str(st)] = statuses.get(str(st), 0) + 1
    return {
        "replicas": replicas,
        "latency": latency,
        "load": load,
        "requests": len(finished),
        "errors": sum(1 for _, _, st in finished if st != 200),
        "status": statuses,
    }


def recovery(series: dict, hold_s: int = 10) -> dict:
    """Seconds after the load step until the sliding p95 is back within 1.2x of its level before the step
    and stays there for `hold_s` seconds (None: it never did while the step lasted)."""
    step = series["load"][1]
    before = [p["p95_ms"] for p in series["latency"] if p["p95_ms"] and step["from"] - 15 <= p["t"] <= step["from"]]
    baseline = sorted(before)[len(before) // 2] if before else None
    during = [p for p in series["latency"] if step["from"] < p["t"] <= step["to"] and p["p95_ms"] is not None]
    back = None
    if baseline:
        for i, p in enumerate(during):
            window = [q["p95_ms"] for q in during[i : i + hold_s]]
            if len(window) == hold_s and max(window) <= 1.2 * baseline:
                back = p["t"] - step["from"]
                break
    peak = max((p["p95_ms"] for p in during), default=None)
    return {"p95_before_step_ms": baseline, "p95_peak_during_step_ms": peak, "seconds_to_recover_within_1_2x": back}


def plot(series: dict, title: str, path: Path) -> None:
    plt = harness.pyplot()
    fig, (ax_rep, ax_lat) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    names = [k for k in series["replicas"][0] if k != "t"]
    for name in names:
        ax_rep.step(
            [r["t"] for r in series["replicas"]], [r[name] for r in series["replicas"]], where="post", label=name
        )
    ax_rep.set(ylabel="replicas", title=title)
    ax_rep.legend(loc="upper left", fontsize=8)
    points = [p for p in series["latency"] if p["p95_ms"] is not None]
    ax_lat.plot([p["t"] for p in points], [p["p95_ms"] for p in points], color="black", label="p95 (5 s window)")
    ax_lat.set(xlabel="seconds", ylabel="p95 ms")
    ax_load = ax_lat.twinx()
    ax_load.step(
        [s["from"] for s in series["load"]] + [series["load"][-1]["to"]],
        [s["rate"] for s in series["load"]] + [series["load"][-1]["rate"]],
        where="post",
        color="tab:red",
        alpha=0.5,
        label="offered load",
    )
    ax_load.set_ylabel("requests/s", color="tab:red")
    for ax in (ax_rep, ax_lat):
        ax.grid(alpha=0.3)
    harness.save_figure(fig, path)


def main() -> None:
    parser = harness.cli(__doc__)
    parser.add_argument("config", help="a Serve config whose args hold load_profile: [[rate, seconds], ...]")
    args = parser.parse_args()
    profile = Path(args.config).stem
    with harness.ray_session():
        app, app_cfg = harness.serve_config_app(args.config)
        url = harness.deploy(app, app_cfg["name"])
        print(f"{profile}: driving {app_cfg['args']['load_profile']} (rate/s, seconds)", flush=True)
        series = asyncio.run(drive(url, app_cfg["args"]["load_profile"], app_cfg["name"]))
    peak = {name: max(r[name] for r in series["replicas"]) for name in series["replicas"][0] if name != "t"}
    result = {
        "profile": profile,
        "config": args.config,
        "peak_replicas": peak,
        **recovery(series),
        "requests": series["requests"],
        "errors": series["errors"],
        "status": series["status"],
        "series": series,
        "command": f"python -m benchmarks.speed.autoscale {args.config}",
        "date": harness.utc_now(),
    }
    harness.write_json(f"{profile}.json", result, indent=1)
    plot(series, f"{profile}: replicas per stage and p95 under a load step", RESULTS / f"{profile}.png")
    print(json.dumps({k: v for k, v in result.items() if k != "series"}, indent=2))


if __name__ == "__main__":
    main()
