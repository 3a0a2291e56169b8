"""Issue 21: the app stopped the way docker stop / systemd / Kubernetes (SIGTERM) and Ctrl-C (SIGINT) stop it, to its
process group, leaves nothing behind: no process of its run (Ray's node, workers, HAProxy, the Bolt server's JVM)
and no port held, within 30 s; and a second start on the same ports and data folder answers, with both stores
consistent. `python graph.py demo` is started in a session of its own, as an operator's shell or a service would."""

from __future__ import annotations

import signal

import httpx
import pytest

from benchmarks.reliability.stop_signals import new_app

pytestmark = pytest.mark.integration

STOP_WITHIN_S = 30


def test_sigterm_then_sigint_leave_nothing_and_a_restart_on_the_same_ports_answers(tmp_path):
    app = new_app("graph.py", tmp_path)
    try:
        for run, sig in ((1, signal.SIGTERM), (2, signal.SIGINT)):
            app.start(run)
            app.wait_answering()
            verify = httpx.get(f"http://127.0.0.1:{app.port}/v1/collections/demo/verify", timeout=60)
            assert verify.status_code == 200 and verify.json()["consistent"], verify.text
            stopped = app.stop(sig, timeout_s=STOP_WITHIN_S)
            print(f"run {run}: {stopped}")  # the figures, with -s
            # The run really held the HTTP port and HAProxy's listeners: the check below is not vacuous.
            assert {app.port, app.stats_port, app.metrics_port} <= set(stopped["ports"]), stopped
            assert "haproxy" in stopped["process_kinds"] and "bolt_server" in stopped["process_kinds"], stopped
            assert stopped["left"] == [], (
                f"{sig.name}: still running {STOP_WITHIN_S}s later: {stopped['left']}\n{app.tail()}"
            )
            assert stopped["ports_held"] == [], f"{sig.name}: ports still held: {stopped['ports_held']}"
    finally:
        app.kill_leftovers()  # marked processes of this run only; nothing else on the machine
