"""Graph endpoints, document deletion and the ingest CLI over real HTTP against the real app (Ray Serve,
MiniLM, Qdrant Edge, ArcadeDB's Bolt server)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from deployments.cli.ingest import IngestError, IngestState, ingest, read_source
from deployments.cli.ingest import main as ingest_main
from deployments.client import GraphRAGClient
from tests.fakes import WRITES
from tests.local_app import local_app

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "configs" / "sample"
COLLECTION = "graphapi"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    args = {
        "data_dir": str(tmp_path_factory.mktemp("graphrag-graphapi")),
        "graph": {"user_query_max_rows": 50, "user_query_max_bytes": 65536, "user_query_timeout_s": 5.0},
    }
    with local_app(args, "graphrag-graphapi") as base, httpx.Client(base_url=base, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def ingested(api):
    docs = [{"id": p.stem, "text": p.read_text()} for p in sorted(SAMPLE.glob("*.md"))]
    resp = api.post("/v1/ingest", json={"collection": COLLECTION, "documents": docs})
    assert resp.status_code == 200, resp.text
    return resp.json()


def stats(api, collection=COLLECTION) -> dict:
    return api.get(f"/v1/collections/{collection}").json()


def test_graph_query_reads_with_parameters(api, ingested):
    resp = api.post("/v1/graph/query", json={
        "query": "MATCH (c:Chunk) WHERE c.collection = $c RETURN c.doc_id AS doc, count(*) AS n ORDER BY doc",
        "parameters": {"c": COLLECTION}})  # fmt: skip
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["columns"] == ["doc", "n"] and {r[0] for r in body["rows"]} == {p.stem for p in SAMPLE.glob("*.md")}
    capped = api.post("/v1/graph/query", json={"query": "UNWIND range(1, 1000) AS i RETURN i"}).json()
    assert len(capped["rows"]) == 50 and capped["truncated"] and capped["row_cap"] == 50


@pytest.mark.parametrize("query", [q for q in WRITES if q.strip()])
def test_graph_query_refuses_writes_with_400(api, ingested, query):
    before = stats(api)
    resp = api.post("/v1/graph/query", json={"query": query})
    assert resp.status_code == 400, resp.text
    assert "refused" in resp.json()["detail"] and "Traceback" not in resp.text
    assert stats(api) == before


@pytest.mark.parametrize(
    "body", [{"query": ""}, {"query": "MATCH (n) RETURN n", "parameters": {"bad name": 1}}, {"query": "x" * 20_001}]
)
def test_graph_query_bad_input_is_422(api, body):
    assert api.post("/v1/graph/query", json=body).status_code == 422


def test_graph_query_syntax_error_is_400(api, ingested):
    resp = api.post("/v1/graph/query", json={"query": "MATCH (n RETURN n"})
    assert resp.status_code == 400 and "rejected" in resp.json()["detail"]


@pytest.mark.parametrize("query", [
    'WITH 1 AS x //\rLOAD CSV FROM "file:///etc/passwd" AS line RETURN line LIMIT 3\n',
    "WITH 1 AS x //\rMATCH (n) DETACH DELETE n\n",
    "WITH 1 AS x //\u2028CREATE (:Pwned)\n",
])  # fmt: skip
def test_graph_query_refuses_the_reported_comment_bypass(api, ingested, query):
    """Issue 10, finding 1, as filed: a `//` comment ended by CR read /etc/passwd and wrote any collection."""
    before = stats(api)
    resp = api.post("/v1/graph/query", json={"query": query})
    assert resp.status_code == 400, resp.text
    assert "root:" not in resp.text and stats(api) == before


def test_graph_query_timeout_is_504(api, ingested):
    """Issue 10, finding 2: a user query past graph.user_query_timeout_s is a gateway timeout (stopped in the store:
    tests/graph/test_user_query_security.py)."""
    resp = api.post("/v1/graph/query", json={
        "query": "UNWIND range(1,1000) AS a UNWIND range(1,1000) AS b UNWIND range(1,200) AS c RETURN count(*)"})  # fmt: skip
    assert resp.status_code == 504, resp.text
    assert resp.json()["stage"] == "graph" and "within 5s" in resp.json()["detail"]


def test_graph_query_response_bytes_are_capped(api, ingested):
    """Issue 10, finding 3: one row of a 100,000-element list (0.6 MB) under the 64 KiB cap."""
    resp = api.post("/v1/graph/query", json={"query": "RETURN range(1, 100000) AS r"})
    assert resp.status_code == 200, resp.text
    assert len(resp.content) < 65536 and resp.json()["truncated"] and resp.json()["byte_cap"] == 65536
    many = api.post(
        "/v1/graph/query",
        json={
            "query": "UNWIND range(1, 40) AS i RETURN i, reduce(s = '', j IN range(1, 200) | s + 'xxxxxxxxxx') AS pad"
        },
    )
    assert many.status_code == 200 and len(many.content) < 65536 + 1024
    assert many.json()["truncated"] and 0 < len(many.json()["rows"]) < 40


def test_entity_neighbourhood(api, ingested):
    resp = api.get("/v1/graph/entities/ArcadeDB", params={"collection": COLLECTION})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["entity"]["id"] == "arcadedb" and "arcadedb" in body["doc_ids"]
    assert body["neighbours"] and all(n["hops"] == 1 for n in body["neighbours"])
    assert body["relations"] and all(r["chunk_ids"] for r in body["relations"])
    missing = api.get("/v1/graph/entities/no such thing here", params={"collection": COLLECTION})
    assert missing.status_code == 404
    hostile = api.get("/v1/graph/entities/x`}) MATCH (n) DETACH DELETE n //", params={"collection": COLLECTION})
    assert hostile.status_code == 404 and stats(api)["chunks"] == ingested["chunks"]
    assert api.get("/v1/graph/entities/ArcadeDB", params={"collection": COLLECTION, "hops": 9}).status_code == 422


def test_delete_document_from_both_stores(api):
    collection = "graphapi_delete"
    docs = [
        {"id": "shared/a.md", "text": "Alice Smith founded Acme Corp. Zebulon Quark joined Acme Corp later."},
        {"id": "b", "text": "Alice Smith still runs Acme Corp."},  # a stated relation (co-occurrence is none)
    ]
    assert api.post("/v1/ingest", json={"collection": collection, "documents": docs}).status_code == 200
    before = stats(api, collection)
    assert api.get("/v1/graph/entities/Zebulon Quark", params={"collection": collection}).status_code == 200

    resp = api.delete("/v1/documents/shared/a.md", params={"collection": collection})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"collection": collection, "doc_id": "shared/a.md", "points": 1, "chunks": 1}
    after = stats(api, collection)
    assert after["points"] == before["points"] - 1 and after["chunks"] == before["chunks"] - 1
    # Only document a supported Zebulon Quark; Alice Smith and Acme Corp (and their relation) live on through b.
    assert api.get("/v1/graph/entities/Zebulon Quark", params={"collection": collection}).status_code == 404
    alice = api.get("/v1/graph/entities/Alice Smith", params={"collection": collection}).json()
    assert alice["doc_ids"] == ["b"] and {r["target"] for r in alice["relations"]} | {
        r["source"] for r in alice["relations"]
    } >= {"acme corp"}
    assert all(r["doc_ids"] == ["b"] for r in alice["relations"])
    hits = api.post("/v1/retrieve", json={"collection": collection, "query": "Zebulon Quark"}).json()["hits"]
    assert {h["doc_id"] for h in hits} == {"b"}

    again = api.delete("/v1/documents/shared/a.md", params={"collection": collection})
    assert again.status_code == 404 and "shared/a.md" in again.json()["detail"]
    assert api.delete("/v1/documents/never", params={"collection": "no_such_collection"}).status_code == 404
    assert api.delete("/v1/documents/b", params={"collection": collection}).status_code == 200
    assert stats(api, collection) == {"collection": collection, "points": 0, "chunks": 0, "entities": 0, "relations": 0}


class _FailAfter(httpx.BaseTransport):
    """Passes `n` requests to the real transport, then fails like a dropped connection (an interrupted run)."""

    def __init__(self, n: int):
        self.n = n
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.n <= 0:
            raise httpx.ConnectError("interrupted", request=request)
        self.n -= 1
        return self.inner.handle_request(request)


def test_ingest_cli_folder_skip_unchanged_and_resume(api, tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.md").write_text("# One\n\nQdrant Edge runs inside the process.")
    (folder / "two.txt").write_text("Ray Serve scales deployments.")
    (folder / "sub" / "three.html").write_text(
        "<html><head><title>Three</title><script>var x = 1;</script></head><body><p>ArcadeDB speaks Bolt.</p></body></html>"
    )
    (folder / "four.md").write_text("Neo4j is a graph database.")
    (folder / "skip.pdf").write_bytes(b"%PDF")
    docs = list(read_source(folder))
    assert [d["id"] for d in docs] == ["four.md", "one.md", "sub/three.html", "two.txt"]
    html = next(d for d in docs if d["id"] == "sub/three.html")
    assert html["text"].startswith("Three") and "ArcadeDB speaks Bolt." in html["text"] and "var x" not in html["text"]

    state_dir = tmp_path / "state"
    state = IngestState.for_target(state_dir, str(api.base_url), "cli")
    # Interrupted after the first batch of two: that batch is recorded, the rest is not.
    with httpx.Client(base_url=api.base_url, timeout=120, transport=_FailAfter(1)) as flaky:
        with pytest.raises(IngestError):
            ingest(
                GraphRAGClient(str(api.base_url), http_client=flaky),
                "cli",
                docs,
                state,
                batch_size=2,
                attempts=1,
                progress=False,
            )
    assert sorted(IngestState.for_target(state_dir, str(api.base_url), "cli").hashes) == ["four.md", "one.md"]
    assert stats(api, "cli")["points"] == 2

    # Resumed by the command: only the two missing documents are sent.
    argv = [
        str(folder),
        "--url",
        str(api.base_url),
        "--collection",
        "cli",
        "--state-dir",
        str(state_dir),
        "--batch-size",
        "2",
        "--no-progress",
    ]
    assert ingest_main(argv) == 0
    assert stats(api, "cli")["points"] == 4
    resumed = IngestState.for_target(state_dir, str(api.base_url), "cli")
    assert len(resumed.hashes) == 4

    # Unchanged documents are skipped; a changed one is sent again and replaces its old version.
    state = IngestState.for_target(state_dir, str(api.base_url), "cli")
    (folder / "two.txt").write_text("Ray Serve scales deployments independently, one by one.")
    report = ingest(
        GraphRAGClient(str(api.base_url), http_client=api),
        "cli",
        list(read_source(folder)),
        state,
        batch_size=2,
        progress=False,
    )
    assert report.sent == 1 and report.skipped_unchanged == 3
    assert stats(api, "cli")["points"] == 4


def test_ingest_cli_beir_corpus(api, tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": "d1", "title": "Qdrant", "text": "A vector search engine."},
        {"_id": "d2", "title": "", "text": "Untitled passage."},
    ]
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    docs = list(read_source(corpus))
    assert docs[0]["text"] == "Qdrant\n\nA vector search engine." and docs[0]["metadata"] == {"title": "Qdrant"}
    assert (
        ingest_main([str(corpus), "--url", str(api.base_url), "--collection", "beir", "--no-state", "--no-progress"])
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sent"] == 2
    assert stats(api, "beir")["points"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "no id"}\n')
    assert ingest_main([str(bad), "--url", str(api.base_url), "--no-state", "--no-progress"]) == 2
