"""Error statuses of the ingress over HTTP, without Ray: bugs answer 500 with the request id."""
from __future__ import annotations

import logging

from tests.ingress_harness import ingress_client
from tests.test_pipeline import FakeStages


async def test_bug_in_a_stage_is_a_500_with_the_request_id_and_a_logged_traceback(monkeypatch, caplog):
    fake = FakeStages()
    fake.fail["graph"] = TypeError("unsupported operand type(s)")
    with ingress_client(fake.stages(), monkeypatch, {"retrieval.mode": "hybrid+graph"}) as client, caplog.at_level(logging.ERROR):
        resp = await client.post("/v1/retrieve", json={"query": "q"}, headers={"X-Request-ID": "req-42"})
    assert resp.status_code == 500, resp.text
    assert resp.json()["request_id"] == "req-42" and "req-42" in resp.json()["detail"]
    assert "unsupported operand" not in resp.text, "the client must not see internals"
    logged = [r for r in caplog.records if "req-42" in r.getMessage()]
    assert logged and logged[0].exc_info and logged[0].exc_info[0] is TypeError


async def test_stage_outage_is_still_degraded_with_200(monkeypatch):
    fake = FakeStages()
    fake.fail["graph"] = ConnectionError("bolt refused")
    with ingress_client(fake.stages(), monkeypatch, {"retrieval.mode": "hybrid+graph"}) as client:
        resp = await client.post("/v1/retrieve", json={"query": "q"})
    assert resp.status_code == 200 and resp.json()["degraded"][0]["stage"] == "graph"
