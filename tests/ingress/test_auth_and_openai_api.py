"""API keys and the OpenAI wire translation, without Ray."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from deployments.config import AppConfig
from deployments.ingress.auth import ApiKeyAuth, hash_key, presented_key
from deployments.ingress.openai_api import ChatCompletionRequest, completion_chunks_sse, to_completion
from deployments.models import Citation, Hit, StreamDelta, StreamDone, StreamError, StreamReferences, Subgraph, Timings


def test_keys_are_checked_by_digest_from_either_header():
    auth = ApiKeyAuth([hash_key("k1"), hash_key("k2")])
    assert auth.check({"authorization": "Bearer k2"}) is None
    assert auth.check({"x-api-key": "k1"}) is None
    assert auth.check({"authorization": "bearer  k1 "}) is None
    assert auth.check({"authorization": "Bearer nope"}) == "invalid API key"
    assert "missing API key" in auth.check({})
    assert "missing" in auth.check({"authorization": "Basic k1"})
    assert presented_key({"authorization": "Bearer "}) is None
    assert auth.requires_key("/v1/retrieve") and not auth.requires_key("/healthz") and not auth.requires_key("/readyz")
    assert not ApiKeyAuth([]).requires_key("/v1/retrieve")


def test_config_takes_digests_never_keys():
    digest = hash_key("secret")
    assert AppConfig.from_args({"data_dir": "/tmp/x", "auth.api_key_hashes": [digest.upper()]}).auth.api_key_hashes == [
        digest
    ]
    with pytest.raises(ValidationError, match="SHA-256 hex digests"):
        AppConfig.from_args({"data_dir": "/tmp/x", "auth.api_key_hashes": ["secret"]})


def test_last_user_message_is_the_query_and_extensions_pass_through():
    req = ChatCompletionRequest(
        model="gpt-whatever",
        temperature=0.3,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "old"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "new question"}]},
        ],
        collection="c1",
        top_k=3,
        max_hops=1,
        filter={"lang": "en"},
    )
    a = req.to_answer_request()
    assert (a.query, a.collection, a.top_k, a.max_hops, a.filter) == ("new question", "c1", 3, 1, {"lang": "en"})


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "user message"),
        ({"messages": [{"role": "user", "content": "  "}]}, "must contain text"),
        ({"messages": [{"role": "user", "content": "q" * 2001}]}, "2000"),
        ({"messages": [{"role": "user", "content": "q"}], "top_k": 0}, "top_k"),
        ({"messages": [{"role": "user", "content": "q"}], "filter": {"bad key": 1}}, "filter"),
        ({"messages": [{"role": "user", "content": "q"}], "n": 2}, "less than or equal to 1"),
    ],
)
def test_bad_chat_requests_name_the_problem(body, needle):
    with pytest.raises(ValidationError, match=needle):
        ChatCompletionRequest(**body)


def _hits():
    return [
        Hit(chunk_id=f"d{i}#0", doc_id=f"d{i}", text=f"text {i}", score=1.0 / i, sources=["vector"]) for i in (1, 2)
    ]


def test_completion_carries_citations_in_message_and_fields():
    done = StreamDone(
        query="q",
        collection="c",
        hits=_hits(),
        graph=Subgraph(),
        timings=Timings(),
        answer="A [2].",
        citations=[Citation(n=2, chunk_id="d2#0", doc_id="d2")],
        model="llm",
    )
    c = to_completion(done, max_passages=6)
    content = c.choices[0].message.content
    assert content.startswith("A [2].") and "[2] d2 (d2#0)" in content
    assert c.citations[0].doc_id == "d2" and [r.n for r in c.references] == [1, 2] and c.model == "llm"


async def test_chunks_send_references_first_and_citations_last():
    hits = _hits()

    async def events():
        yield StreamReferences(query="q", collection="c", hits=hits, graph=Subgraph(), timings=Timings(), model="llm")
        yield StreamDelta(content="A ")
        yield StreamDelta(content="[1].")
        yield StreamDone(
            query="q",
            collection="c",
            hits=hits,
            graph=Subgraph(),
            timings=Timings(),
            answer="A [1].",
            citations=[Citation(n=1, chunk_id="d1#0", doc_id="d1")],
            model="llm",
        )

    lines = [line async for line in completion_chunks_sse(events(), 6)]
    assert lines[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(line[len(b"data: ") :]) for line in lines[:-1]]
    assert chunks[0]["references"][0]["chunk_id"] == "d1#0" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "llm" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.startswith("A [1].") and "Sources:" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["citations"][0]["n"] == 1

    async def broken():
        yield StreamError(stage="chat", detail="the answer broke off")

    lines = [line async for line in completion_chunks_sse(broken(), 6)]
    assert json.loads(lines[0][6:])["error"]["code"] == "chat"
