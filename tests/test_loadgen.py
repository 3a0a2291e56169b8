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
    # 4 workers × one 50 ms request each at a time: at most 80 requests/s, warm-ups included.
    assert 0 < run.summary()["qps"] <= 80 * 1.05


def test_cpu_is_attributed_to_process_names():
    before = {1: ("ray::ServeReplica:app:Ingress", 1.0), 2: ("/venv/bin/haproxy -db -f x", 0.5), 3: ("raylet", 0.0)}
    after = {1: ("ray::ServeReplica:app:Ingress", 1.4), 2: ("/venv/bin/haproxy -db -f x", 0.6), 4: ("new", 9.0)}
    assert cpu_ms_per_request(before, after, 100) == {"ray::ServeReplica:app:Ingress": 4.0, "haproxy": 1.0}


def test_process_cpu_sees_this_process():
    import os

    mine = process_cpu(("pytest", "python"))
    assert os.getpid() in mine and mine[os.getpid()][1] > 0
