"""The web page's Stages view during an autoscaling experiment: deploys configs/autoscale-graph.yaml (the real
Ingress over simulated stages, the graph stage the bottleneck), opens /ui/#stages in Debian's headless Chromium,
drives a shortened load step, records the Graph replicas the page shows every 2 s, and saves the view at the end
of the step to benchmarks/results/ui-stages-autoscaling.png (+ ui-autoscale.json).

    python -m benchmarks.speed.ui_autoscale [--low 6 --high 24 --low-s 20 --high-s 70]
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time

from benchmarks import harness
from benchmarks.harness import RESULTS, ROOT
from benchmarks.speed.autoscale import drive

CONFIG = ROOT / "configs" / "autoscale-graph.yaml"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    parser = harness.cli(__doc__)
    parser.add_argument("--low", type=float, default=6, help="requests/s before the step")
    parser.add_argument("--high", type=float, default=24, help="requests/s during the step")
    parser.add_argument("--low-s", type=float, default=20)
    parser.add_argument("--high-s", type=float, default=70)
    opts = parser.parse_args()
    steps = [[opts.low, opts.low_s], [opts.high, opts.high_s]]
    seen: list[dict] = []  # what the page showed
    with harness.ray_session():
        from playwright.sync_api import sync_playwright

        app, app_cfg = harness.serve_config_app(CONFIG)
        base = harness.deploy(app, app_cfg["name"])
        series: dict = {}
        load = threading.Thread(
            target=lambda: series.update(asyncio.run(drive(base, steps, app_cfg["name"]))), daemon=True
        )
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1440, "height": 900},
                device_scale_factor=1,
            )
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(f"{base}/ui/#stages")
            page.wait_for_selector("#replicas tr[data-deployment=SimulatedGraph]")
            t0 = time.monotonic()
            load.start()
            while load.is_alive():
                graph = page.text_content("#replicas tr[data-deployment=SimulatedGraph] .running")
                seen.append({"t": round(time.monotonic() - t0, 1), "graph_running": int(graph or 0)})
                page.wait_for_timeout(2000)
            page.screenshot(path=str(RESULTS / "ui-stages-autoscaling.png"))
            context.close()
        load.join()
    peak = {name: max(r[name] for r in series["replicas"]) for name in series["replicas"][0] if name != "t"}
    result = {
        "config": str(CONFIG.relative_to(ROOT)),
        "load_profile": steps,
        "peak_replicas_from_serve": peak,
        "peak_graph_replicas_on_page": max(s["graph_running"] for s in seen),
        "page_samples": seen,
        "requests": series["requests"],
        "errors": series["errors"],
        "command": "python -m benchmarks.speed.ui_autoscale",
        "date": harness.utc_now(),
    }
    harness.write_json("ui-autoscale.json", result, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "page_samples"}, indent=2))


if __name__ == "__main__":
    main()
