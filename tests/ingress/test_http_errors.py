"""Error statuses of the ingress over HTTP, without Ray: bugs answer 500 with the request id."""

from __future__ import annotations

import logging

import pytest

from tests.fakes import FakeStages
from tests.ingress_harness import ingress_client


async def test_bug_in_a_stage_is_a_500_with_the_request_id_and_a_logged_traceback(monkeypatch, caplog):
    fake = FakeStages()
    fake.fail["graph"] = TypeError("unsupported operand type(s)")
    with (
        ingress_client(fake.stages(), monkeypatch, {"retrieval.mode": "hybrid+graph"}) as client,
        caplog.at_level(logging.ERROR),
    ):
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


MALFORMED = {
    "NaN": b'{"collection": "x", "query": "rust", "top_k": NaN}',
    "Infinity": b'{"collection": "x", "query": "rust", "top_k": Infinity}',
    "-Infinity in a filter": b'{"collection": "x", "query": "rust", "filter": {"year": -Infinity}}',
    "overflowing float": b'{"collection": "x", "query": "rust", "filter": {"year": 1e400}}',
    "lone surrogate in query": b'{"collection": "x", "query": "\\ud800"}',
    "lone low surrogate in a filter key": b'{"collection": "x", "query": "q", "filter": {"\\udc00": 1}}',
    "reversed pair": b'{"collection": "x", "query": "\\ude00\\ud83d"}',
    "invalid UTF-8": b'{"collection": "x", "query": "\xff\xfe"}',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("path", ["/v1/retrieve", "/v1/answer"])
async def test_malformed_json_values_are_4xx(monkeypatch, path, body):
    with ingress_client(FakeStages().stages(), monkeypatch) as client:
        resp = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= resp.status_code < 500, resp.text
    resp.json()  # a JSON body


async def test_lone_surrogates_in_ingested_documents_are_4xx(monkeypatch):
    fake = FakeStages()
    bodies = [
        b'{"documents": [{"id": "\\ud800", "text": "t"}]}',
        b'{"documents": [{"id": "a", "text": "x \\udfff y"}]}',
        b'{"documents": [{"id": "a", "text": "t", "metadata": {"k": ["\\ud800"]}}]}',
        b'{"documents": [{"id": "a", "text": "t", "metadata": {"k": NaN}}]}',
    ]
    with ingress_client(fake.stages(), monkeypatch) as client:
        for body in bodies:
            resp = await client.post("/v1/ingest", content=body, headers={"content-type": "application/json"})
            assert resp.status_code == 422, (body, resp.text)
    assert fake.stored == {"vector": set(), "graph": set()}


async def test_valid_surrogate_pairs_pass(monkeypatch):
    with ingress_client(FakeStages().stages(), monkeypatch) as client:
        resp = await client.post(
            "/v1/retrieve", content=b'{"query": "\\ud83d\\ude00 rust"}', headers={"content-type": "application/json"}
        )
    assert resp.status_code == 200 and resp.json()["query"] == "\U0001f600 rust"


async def test_422_echoes_only_an_excerpt_of_the_input(monkeypatch):
    too_long = {"documents": [{"id": "a", "text": "a" * 200_001}]}
    too_many = {"documents": [{"id": f"d{i}", "text": "b" * 1000} for i in range(257)]}
    with ingress_client(FakeStages().stages(), monkeypatch) as client:
        for body in (too_long, too_many):
            resp = await client.post("/v1/ingest", json=body)
            assert resp.status_code == 422 and len(resp.content) < 2_000, len(resp.content)
            error = resp.json()["detail"][0]
            assert error["loc"][:2] == ["body", "documents"] and error["msg"]
            if body is too_long:
                assert error["input"].startswith("aaaa") and error["input"].endswith("(200001 characters)")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/octet-stream", "application/x-www-form-urlencoded"]
)
async def test_a_body_of_another_content_type_is_a_4xx(monkeypatch, content_type):
    with ingress_client(FakeStages().stages(), monkeypatch) as client:
        for path in ("/v1/retrieve", "/v1/ingest"):
            resp = await client.post(path, content=b'{"query": "q"} \xff', headers={"content-type": content_type})
            assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.text)
