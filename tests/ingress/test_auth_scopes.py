"""API-key scopes (read, write, admin) and per-key collection allow-lists, over HTTP without Ray."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deployments.config import AppConfig, VectorConfig
from deployments.ingress.auth import ROUTE_SCOPES, hash_key, required_scope
from deployments.ingress.http_app import app
from deployments.models import Chunk, GraphQueryResponse
from deployments.vector.edge import EdgeVectorStore
from deployments.vector.service import VectorService
from tests.fakes import FakeEmbedder, FakeStages
from tests.ingress_harness import ingress_client

KEYS = {
    "legacy": None,  # auth.api_key_hashes: full access
    "reader": {"scopes": ["read"]},
    "writer": {"scopes": ["write"]},
    "admin": {"scopes": ["admin"]},
    "reader-a": {"scopes": ["read", "write"], "collections": ["a"]},
}
AUTH = {
    "api_key_hashes": [hash_key("legacy")],
    "keys": [{"sha256": hash_key(name), "name": name, **grant} for name, grant in KEYS.items() if grant],
}


class Stages(FakeStages):
    async def graph_query(self, query, parameters, max_rows):
        return GraphQueryResponse(columns=["n"], rows=[[1]], truncated=False, row_cap=100, byte_cap=65536)

    def stages(self):
        stages = super().stages()
        stages.graph.query = self.graph_query
        return stages


REQUESTS = {  # name: (method, path, json body, scope)
    "retrieve": ("POST", "/v1/retrieve", {"query": "q", "collection": "a"}, "read"),
    "answer": ("POST", "/v1/answer", {"query": "q", "collection": "a"}, "read"),
    "chat": (
        "POST",
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "q"}], "collection": "a"},
        "read",
    ),
    "stats": ("GET", "/v1/collections/a", None, "read"),
    "collections": ("GET", "/v1/collections", None, "read"),
    "documents": ("GET", "/v1/collections/a/documents?limit=10", None, "read"),
    "ingest": ("POST", "/v1/ingest", {"collection": "a", "documents": [{"id": "d", "text": "t."}]}, "write"),
    "delete": ("DELETE", "/v1/documents/d?collection=a", None, "write"),
    "graph_query": ("POST", "/v1/graph/query", {"query": "RETURN 1 AS n"}, "admin"),
}


async def _send(client, key: str | None, method: str, path: str, body):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_each_key_gets_exactly_its_scopes(monkeypatch, name):
    method, path, body, scope = REQUESTS[name]
    with ingress_client(Stages().stages(), monkeypatch, {"auth": AUTH}) as client:
        for key, grant in KEYS.items():
            resp = await _send(client, key, method, path, body)
            allowed = grant is None or scope in grant["scopes"]
            if allowed:
                assert resp.status_code == 200, (key, resp.text)
            else:
                assert resp.status_code == 403 and scope in resp.json()["detail"], (key, resp.text)


@pytest.mark.parametrize("name", [n for n in REQUESTS if n not in ("graph_query", "collections")])
async def test_collection_allow_list(monkeypatch, name):
    method, path, body, _ = REQUESTS[name]
    other_path = path.replace("/collections/a", "/collections/b").replace("collection=a", "collection=b")
    other_body = {**body, "collection": "b"} if body else None
    with ingress_client(Stages().stages(), monkeypatch, {"auth": AUTH}) as client:
        assert (await _send(client, "reader-a", method, path, body)).status_code == 200
        resp = await _send(client, "reader-a", method, other_path, other_body)
        assert resp.status_code == 403 and "'b'" in resp.json()["detail"], resp.text
        assert (await _send(client, "legacy", method, other_path, other_body)).status_code == 200


async def test_collection_listing_shows_a_limited_key_only_its_collections(monkeypatch, tmp_path):
    """Over the real vector service (Qdrant Edge): a key limited to `a` sees `a` only, full keys see all."""
    vector = VectorService(VectorConfig(), FakeEmbedder(), store=EdgeVectorStore(tmp_path / "qdrant"))  # type: ignore[arg-type]
    for collection in ("a", "b", "c"):
        await vector.upsert(
            collection, [Chunk(chunk_id=f"{collection}-doc#0", doc_id=f"{collection}-doc", index=0, text="t")]
        )
    stages = Stages().stages()
    stages.vector = vector
    try:
        with ingress_client(stages, monkeypatch, {"auth": AUTH}) as client:

            async def names(key):
                resp = await _send(client, key, "GET", "/v1/collections", None)
                assert resp.status_code == 200, resp.text
                return [c["collection"] for c in resp.json()["collections"]]

            assert await names("reader-a") == ["a"]
            assert await names("reader") == await names("legacy") == ["a", "b", "c"]
            listed = (await _send(client, "reader", "GET", "/v1/collections", None)).json()["collections"][0]
            assert listed == {"collection": "a", "points": 1, "documents": 1}
            docs = await _send(client, "reader-a", "GET", "/v1/collections/a/documents", None)
            assert docs.json()["documents"] == [{"doc_id": "a-doc", "chunks": 1}] and docs.json()["next_cursor"] is None
            assert (await _send(client, "reader-a", "GET", "/v1/collections/b/documents", None)).status_code == 403
            assert (await _send(client, "reader", "GET", "/v1/collections/nope/documents", None)).status_code == 404
            assert (
                await _send(client, "reader", "GET", "/v1/collections/a/documents?cursor=x", None)
            ).status_code == 422
            assert (
                await _send(client, "reader", "GET", f"/v1/collections/a/documents?cursor={'-' * 36}", None)
            ).status_code == 422
            cursor = "0" * 8 + "-0000-0000-0000-" + "0" * 12  # before every point id: the whole first page
            assert (
                await _send(client, "reader", "GET", f"/v1/collections/a/documents?cursor={cursor}", None)
            ).json() == docs.json()
            assert (
                await _send(client, "reader", "GET", "/v1/collections/a/documents?limit=0", None)
            ).status_code == 422
            assert (await _send(client, "writer", "GET", "/v1/collections", None)).status_code == 403  # no read scope
    finally:
        await vector.aclose()


async def test_default_collection_is_checked_too(monkeypatch):
    with ingress_client(Stages().stages(), monkeypatch, {"auth": AUTH}) as client:
        resp = await _send(client, "reader-a", "POST", "/v1/retrieve", {"query": "q"})  # collection "default"
    assert resp.status_code == 403


async def test_missing_or_wrong_key_is_401_and_probes_stay_open(monkeypatch):
    with ingress_client(Stages().stages(), monkeypatch, {"auth": AUTH}) as client:
        assert (await _send(client, None, "POST", "/v1/retrieve", {"query": "q"})).status_code == 401
        assert (await _send(client, "nope", "POST", "/v1/retrieve", {"query": "q"})).status_code == 401
        ready = await client.get("/readyz")
        assert ready.json()["auth"] == "api_keys"
        assert (await _send(client, "writer", "GET", "/openapi.json", None)).status_code == 200


async def test_open_mode_says_so_in_readyz(monkeypatch):
    with ingress_client(Stages().stages(), monkeypatch) as client:
        ready = await client.get("/readyz")
        assert ready.json()["auth"] == "open"
        assert (await _send(client, None, "POST", "/v1/graph/query", {"query": "RETURN 1 AS n"})).status_code == 200


def test_every_route_has_an_explicit_scope():
    paths = app.openapi()["paths"]
    assert "/v1/graph/query" in paths and len(paths) >= 10
    for path, operations in paths.items():
        if path in ("/healthz", "/readyz"):
            continue
        concrete = path.replace("{collection}", "c").replace("{doc_id}", "d").replace("{name}", "n")
        for method in operations:
            assert any(m == method.upper() and p.fullmatch(concrete) for m, p, _ in ROUTE_SCOPES), (method, path)
    assert required_scope("GET", "/v1/some-future-route") == "admin"


def test_key_config():
    legacy = AppConfig.from_args({"data_dir": "/tmp/x", "auth": {"api_key_hashes": [hash_key("k")]}}).auth
    assert not legacy.open and legacy.keys == []
    assert AppConfig.from_args({"data_dir": "/tmp/x"}).auth.open
    with pytest.raises(ValidationError, match="admin scope"):
        AppConfig.from_args(
            {
                "data_dir": "/tmp/x",
                "auth": {"keys": [{"sha256": hash_key("k"), "scopes": ["admin"], "collections": ["a"]}]},
            }
        )
    with pytest.raises(ValidationError, match="appears twice"):
        AppConfig.from_args(
            {
                "data_dir": "/tmp/x",
                "auth": {"api_key_hashes": [hash_key("k")], "keys": [{"sha256": hash_key("k"), "scopes": ["read"]}]},
            }
        )
    with pytest.raises(ValidationError, match="never the keys"):
        AppConfig.from_args({"data_dir": "/tmp/x", "auth": {"keys": [{"sha256": "k", "scopes": ["read"]}]}})
    with pytest.raises(ValidationError):
        AppConfig.from_args({"data_dir": "/tmp/x", "auth": {"keys": [{"sha256": hash_key("k"), "scopes": ["root"]}]}})
    with pytest.raises(ValidationError, match="collection name"):
        AppConfig.from_args(
            {
                "data_dir": "/tmp/x",
                "auth": {"keys": [{"sha256": hash_key("k"), "scopes": ["read"], "collections": ["a b"]}]},
            }
        )
