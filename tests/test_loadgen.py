"""The load generator's accounting: the ramp's warm-up stays out of the latencies, CPU is attributed per process."""

import asyncio

from aiohttp import web

from benchmarks.loadgen import closed_loop, cpu_ms_per_request, process_cpu


async def test_ramp_requests_are_not_counted_but_throughput_is():
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((await request.json())["query"])
        await asyncio.sleep(0.05)
        return web.json_response({"timings": {}})

    app = web.Application()
    app.router.add_post("/v1/answer", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        run = await closed_loop(f"http://127.0.0.1:{port}/v1/answer", lambda n: {"query": str(n)}, 4, 20, ramp_s=0.3)
    finally:
        await runner.cleanup()
    assert len(run.samples) == 20 and {s.query for s in run.samples} == {str(n) for n in range(20)}
    assert any(int(q) < 0 for q in seen), "the ramp sent warm-up requests"
    assert all(s.status == 200 and s.latency >= 0.05 for s in run.samples)
    # 4 workers × one 50 ms request each at a time: at most 80 requests/s of work inside the window. A warm-up
    # that crosses into the window counts only for its share inside (counted whole, this read 82-84).
    assert 0 < run.summary()["qps"] <= 80


def test_cpu_is_attributed_to_process_names():
    before = {1: ("ray::ServeReplica:app:Ingress", 1.0), 2: ("/venv/bin/haproxy -db -f x", 0.5), 3: ("raylet", 0.0)}
    after = {1: ("ray::ServeReplica:app:Ingress", 1.4), 2: ("/venv/bin/haproxy -db -f x", 0.6), 4: ("new", 9.0)}
    assert cpu_ms_per_request(before, after, 100) == {"ray::ServeReplica:app:Ingress": 4.0, "haproxy": 1.0}


def test_process_cpu_sees_this_process():
    import os

    mine = process_cpu(("pytest", "python"))
    assert os.getpid() in mine and mine[os.getpid()][1] > 0


def test_degraded_answers_are_counted_apart_from_ok_and_failed():
    from benchmarks.loadgen import RunResult, Sample

    samples = [
        Sample(0, 0.1, 200, "q", {}, []),
        Sample(0, 0.1, 200, "q", {}, ["graph"]),
        Sample(0, 0.1, 503, "q"),
        Sample(0, 0.1, 0, "q"),
    ]
    assert [s.outcome for s in samples] == ["ok", "degraded", "failed", "failed"]
    assert RunResult("closed", 1, 1.0, samples).summary()["outcomes"] == {"ok": 1, "degraded": 1, "failed": 2}


def test_kill_impact_splits_outcomes_at_the_kill():
    from benchmarks.loadgen import Sample
    from benchmarks.reliability.fault_tolerance import impact

    # Completion times: 1, 2 (before a kill at 5), then 6 degraded, 7 failed, 9 degraded, 10 ok, 12 ok.
    samples = [
        Sample(t - 0.5, 0.5, status, "q", {}, degraded)
        for t, status, degraded in [
            (1, 200, []),
            (2, 200, []),
            (6, 200, ["graph"]),
            (7, 503, None),
            (9, 200, ["graph"]),
            (10, 200, []),
            (12, 200, []),
        ]
    ]
    got = impact(samples, killed_at=5.0)
    assert got["before_kill"] == {"ok": 2, "degraded": 0, "failed": 0}
    assert got["after_kill"] == {"ok": 2, "degraded": 2, "failed": 1}
    assert (got["impaired_for_s"], got["unavailable_for_s"], got["first_ok_after_kill_s"]) == (4.0, 2.0, 5.0)
    assert got["degraded_stages"] == ["graph"]


async def test_the_replacement_is_polled_from_the_kill_while_the_load_runs(monkeypatch):
    import time

    import benchmarks.reliability.fault_tolerance as ft

    polls = 0

    def states(deployment):
        nonlocal polls
        polls += 1
        return ["RUNNING"] if polls > 3 else ["STARTING"]

    monkeypatch.setattr(ft, "replica_states", states)
    monkeypatch.setattr(ft, "replica_actor_names", lambda deployment: ["new"] if polls > 3 else [])

    async def load():
        while polls <= 3:  # the load is still on when the new replica is seen
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)

    poll = asyncio.create_task(ft.poll_replacement("Graph", "old", 1, time.monotonic()))
    load_task = asyncio.create_task(load())
    replaced = await poll
    load_running = not load_task.done()
    await load_task
    assert replaced is not None and polls > 3 and load_running
