"""Bulk import of documents that bring their own vectors, over the real stores without Ray: Qdrant Edge in a temporary
folder, the session's ArcadeDB Bolt server, the offline extractor; the ingress's pipeline and HTTP routes as they run
in the app. The embedder is a deterministic 8-d stand-in that records what it was asked to embed."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import httpx
import numpy as np
import pytest

from deployments.cli import ingest as cli
from deployments.cli.rows import RowError
from deployments.client import GraphRAGClient
from deployments.config import AppConfig, VectorConfig
from deployments.errors import BadRequest
from deployments.graph.service import GraphService
from deployments.ingress.intents import IntentLog
from deployments.ingress.pipeline import Pipeline
from deployments.models import Document, IngestRequest
from deployments.stages import Stages
from deployments.vector.edge import EdgeVectorStore
from deployments.vector.service import VectorService
from tests.fakes import FAKE_DIM, FakeEmbedder
from tests.ingress.test_crash_consistency import _as_dead
from tests.ingress_harness import ingress_client

TEXTS = {
    "acme": "Alice Smith founded Acme Corporation in Berlin. Acme Corporation builds robots.",
    "globex": "Bob Jones runs Globex in Paris. Globex sells robots to Acme Corporation.",
    "initech": "Carol White leads Initech in Rome. Initech competes with Globex.",
}


def vector_of(i: int, dim: int = FAKE_DIM) -> list[float]:
    v = np.arange(1, dim + 1, dtype=np.float32) + 3 * i
    return (v / np.linalg.norm(v)).tolist()


def rows(dim: int = FAKE_DIM) -> list[Document]:
    return [
        Document(id=d, text=t, metadata={"n": i}, vector=vector_of(i, dim)) for i, (d, t) in enumerate(TEXTS.items())
    ]


class RecordingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        self.embedded: list[str] = []

    async def embed(self, texts: list[str]) -> list[list[float]]:
        self.embedded += texts
        return await super().embed(texts)

    async def count_tokens(self, texts: list[str]) -> int:
        return sum(len(t.split()) for t in texts)

    async def ping(self) -> str:
        return "recording"


class Real:
    """The pipeline over real stores; `graph_gate`, when set, holds every graph write until it opens."""

    def __init__(self, tmp_path, graph_config):
        self.embedder = RecordingEmbedder()
        self.vector = VectorService(VectorConfig(), self.embedder, store=EdgeVectorStore(tmp_path / "qdrant"))
        self.graph_gate: asyncio.Event | None = None
        self.graph = GraphService(graph_config, graph_config.bolt_uri, extractor=self._extract)
        self.offline = GraphService(graph_config, graph_config.bolt_uri)._extract  # the app's offline extractor
        self.config = AppConfig.from_args({"data_dir": str(tmp_path)})
        self.collection = f"bulk{uuid.uuid4().hex[:8]}"

    async def _extract(self, chunk):
        if self.graph_gate is not None:
            await self.graph_gate.wait()
        return self.offline(chunk)

    def stages(self) -> Stages:
        unused = None
        return Stages(embedder=self.embedder, vector=self.vector, graph=self.graph, reranker=unused, chat=unused)  # type: ignore[arg-type]

    def pipeline(self, intents: IntentLog | None = None) -> Pipeline:
        return Pipeline(self.config, self.stages(), intents)

    async def held(self) -> tuple[int, dict]:
        """(points in the vector store, chunk/entity/relation counts in the graph store) of the collection."""
        points = await self.vector.count(self.collection) if await self.vector.store.exists(self.collection) else 0
        return points, await self.graph.counts(self.collection)

    async def close(self) -> None:
        await self.vector.aclose()
        await self.graph.aclose()


@pytest.fixture
async def real(tmp_path, graph_config):
    stores = Real(tmp_path, graph_config)
    yield stores
    await stores.close()


def request(real: Real, docs: list[Document]) -> IngestRequest:
    return IngestRequest(collection=real.collection, documents=docs)


async def test_a_document_with_a_vector_is_one_chunk_stored_with_it_and_not_embedded(real):
    plain = Document(id="plain", text="Dave Brown studies robots at Acme Corporation.")
    resp = await real.pipeline().ingest(request(real, [*rows(), plain]))
    assert resp.chunks == 4 and resp.entities > 0  # the graph is extracted as usual
    assert real.embedder.embedded == [plain.text]  # only the document without a vector was embedded
    stored = await real.vector.vectors(real.collection, ["acme#0", "globex#0", "initech#0"])
    for i, chunk_id in enumerate(["acme#0", "globex#0", "initech#0"]):
        assert np.allclose(stored[chunk_id], vector_of(i), atol=1e-6)
    graph_chunks = await real.graph.chunk_ids(real.collection)
    assert set(graph_chunks) == {"acme#0", "globex#0", "initech#0", "plain#0"}
    assert (await real.pipeline().verify(real.collection)).consistent


@pytest.mark.parametrize("existing", [True, False], ids=["existing-collection", "new-collection"])
async def test_a_vector_of_another_dimension_is_a_400_with_nothing_written_in_either_store(real, existing):
    if existing:
        await real.pipeline().ingest(request(real, rows()[:1]))
    before = await real.held()
    docs = rows()
    docs[2] = Document(id="initech", text=TEXTS["initech"], vector=vector_of(2, FAKE_DIM + 1))
    with pytest.raises(
        BadRequest, match=rf"holds {FAKE_DIM}-dimensional vectors.*'initech' \({FAKE_DIM + 1}\).*nothing was written"
    ):
        await real.pipeline().ingest(request(real, docs))
    assert await real.held() == before
    assert (await real.vector.store.exists(real.collection)) is existing  # not even created
    assert real.embedder.embedded == []


async def test_a_document_with_a_vector_longer_than_one_chunk_is_refused_before_any_write(real):
    words = real.config.chunking.max_words
    long = Document(id="long", text=" ".join(["robots"] * (words + 1)), vector=vector_of(0))
    with pytest.raises(BadRequest, match=rf"'long' brings a vector but its text is {words + 1} words"):
        await real.pipeline().ingest(request(real, [*rows(), long]))
    assert await real.held() == (0, {"chunks": 0, "entities": 0, "relations": 0})


async def test_re_importing_the_same_rows_replaces_them_with_the_same_counts(real):
    first = await real.pipeline().ingest(request(real, rows()))
    held = await real.held()
    again = await real.pipeline().ingest(request(real, rows()))
    assert (again.chunks, again.entities, again.relations) == (first.chunks, first.entities, first.relations)
    assert await real.held() == held and held[0] == 3 and held[1]["chunks"] == 3
    assert (await real.pipeline().verify(real.collection)).consistent


async def test_a_crash_between_the_two_writes_is_rolled_back_at_start_and_the_re_import_converges(real, tmp_path):
    await real.pipeline().ingest(request(real, rows()[:1]))  # "acme": kept through the crash
    clean = await real.held()
    intents = IntentLog(tmp_path / "intents")
    real.graph_gate = asyncio.Event()
    task = asyncio.create_task(real.pipeline(intents).ingest(request(real, rows()[1:])))
    while (await real.held())[0] < 3:  # the vector write lands; the graph write waits at the gate
        await asyncio.sleep(0.02)
    # The crash window: one store holds globex and initech, the other does not; the intent names them.
    [pending] = intents.pending()
    assert pending.doc_ids == ["globex", "initech"] and (await real.held())[1] == clean[1]
    _as_dead(intents)  # kill -9 here: the record outlives its process

    restarted = real.pipeline(IntentLog(tmp_path / "intents"))
    assert not (await restarted.verify(real.collection)).consistent
    [done] = await restarted.recover()
    assert done.doc_ids == ["globex", "initech"] and await real.held() == clean
    task.cancel()  # the dead process's work never resumes
    with pytest.raises(asyncio.CancelledError):
        await task
    real.graph_gate = None
    await restarted.ingest(request(real, rows()[1:]))  # the importer resends what was not acknowledged
    report = await restarted.verify(real.collection)
    assert report.consistent and report.documents == 3 and report.vector_chunks == report.graph_chunks == 3


# ---- graphrag-ingest: rows from JSONL and Parquet ----------------------------------------------------------------


def row_dicts(dim: int = FAKE_DIM) -> list[dict]:
    return [{"id": d.id, "text": d.text, "metadata": d.metadata, "vector": d.vector} for d in rows(dim)]


def write_jsonl(path, items: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return path


def write_parquet(path, items: list[dict]):
    """As benchmarks/speed/scale_corpus.py writes them: metadata a JSON string, vector a fixed-size float32 list;
    a missing value is a null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = pa.FixedSizeListArray.from_arrays(
        pa.array(np.asarray([r["vector"] for r in items], dtype=np.float32).ravel()), len(items[0]["vector"])
    )
    table = pa.table(
        {
            "id": [r.get("id") for r in items],
            "text": [r.get("text") for r in items],
            "metadata": [m if isinstance(m := r.get("metadata"), str) else json.dumps(m) for r in items],
            "vector": vectors,
        }
    )
    pq.write_table(table, path)
    return path


class _OnLoop(httpx.BaseTransport):
    """A synchronous transport (the CLI's client) that sends each request through an async client on `loop`."""

    def __init__(self, client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop):
        self.client, self.loop = client, loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = self.client.request(request.method, str(request.url), content=request.read(), headers=request.headers)
        resp = asyncio.run_coroutine_threadsafe(call, self.loop).result()
        return httpx.Response(resp.status_code, headers=resp.headers, content=resp.content)


@pytest.fixture
def import_file(real, monkeypatch):
    """`graphrag-ingest <path>` (no state) against the ingress's HTTP routes over the real stores."""
    with ingress_client(real.stages(), monkeypatch) as http:

        async def run(path) -> cli.IngestReport:
            transport = _OnLoop(http, asyncio.get_running_loop())
            client = GraphRAGClient("http://ingress", http_client=httpx.Client(transport=transport))
            docs = cli.read_source(path)
            return await asyncio.to_thread(
                cli.ingest, client, real.collection, docs, cli.IngestState(None), 2, 1, False
            )

        yield run


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_graphrag_ingest_imports_rows_and_a_re_import_changes_nothing(real, import_file, tmp_path, fmt):
    path = (write_jsonl if fmt == "jsonl" else write_parquet)(tmp_path / f"rows.{fmt}", row_dicts())
    report = await import_file(path)
    assert report.sent == 3 and report.chunks == 3 and real.embedder.embedded == []
    held = await real.held()
    assert held[0] == 3 and held[1]["chunks"] == 3 and held[1]["entities"] > 0
    stored = await real.vector.vectors(real.collection, ["globex#0"])
    assert np.allclose(stored["globex#0"], vector_of(1), atol=1e-6)
    again = await import_file(path)  # no state: every row is sent again
    assert again.sent == 3 and await real.held() == held
    assert (await real.pipeline().verify(real.collection)).consistent


async def test_graphrag_ingest_of_rows_of_another_dimension_fails_with_nothing_written(real, import_file, tmp_path):
    await real.pipeline().ingest(request(real, rows()[:1]))
    before = await real.held()
    path = write_parquet(tmp_path / "rows.parquet", row_dicts(FAKE_DIM * 2))
    with pytest.raises(cli.IngestError, match=rf"answered 400: .*holds {FAKE_DIM}-dimensional vectors"):
        await import_file(path)
    assert await real.held() == before


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"text": None}, r"the field 'text' is missing"),
        ({"id": None}, r"the field 'id' is missing"),
        ({"vector": ["x"] * FAKE_DIM}, r"vector\.0: Input should be a valid number"),
        ({"text": 42}, r"text: Input should be a valid string"),
        ({"metadata": "{not json"}, r"metadata is a string but not JSON"),
        ({"embedding": [0.1] * FAKE_DIM}, r"unknown fields \['embedding'\]"),
    ],
)
def test_a_bad_row_is_an_error_naming_it_and_nothing_is_sent(tmp_path, monkeypatch, fmt, change, error):
    items = row_dicts()
    items[1] = {k: v for k, v in {**items[1], **change}.items() if v is not None}
    if fmt == "jsonl":
        path, where = write_jsonl(tmp_path / "rows.jsonl", items), r"rows\.jsonl:2"
    else:
        if "embedding" in change or "vector" in change or "text" in change and change["text"] is not None:
            pytest.skip("a Parquet column has one type for every row")
        path, where = write_parquet(tmp_path / "rows.parquet", items), r"rows\.parquet: row 2"
    with pytest.raises(RowError, match=where + ".*" + error):
        list(cli.read_source(path))
    sent: list[httpx.Request] = []
    monkeypatch.setattr(
        cli,
        "make_client",
        lambda *a: GraphRAGClient("http://s", http_client=httpx.Client(transport=httpx.MockTransport(sent.append))),
    )
    assert cli.main([str(path), "--no-state", "--no-progress"]) == 2 and sent == []


def test_parquet_without_pyarrow_says_which_extra_to_install(tmp_path, monkeypatch):
    path = write_parquet(tmp_path / "rows.parquet", row_dicts())
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails as if it were not installed
    with pytest.raises(RowError, match=r"pip install 'graphrag-serve\[parquet\]'"):
        next(cli.read_source(path))


def test_a_row_changes_state_when_only_its_vector_changed():
    doc = {"id": "a", "text": "t", "metadata": {}, "vector": [0.1, 0.2]}
    assert cli.content_hash(doc) != cli.content_hash({**doc, "vector": [0.2, 0.1]})
    assert cli.content_hash({"id": "a", "text": "t"}) == cli.content_hash({**doc, "vector": None})


def test_the_resume_state_is_a_journal_one_line_per_batch_and_a_torn_last_line_is_ignored(tmp_path):
    state = cli.IngestState.for_target(tmp_path, "http://server", "big")
    for batch in range(3):
        state.record({f"d{batch}-{i}": f"h{batch}" for i in range(2)})
    lines = state.path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[1]) == {"d1-0": "h1", "d1-1": "h1"}  # each hash written once
    with open(state.path, "a") as f:
        f.write('{"d3-0": "h3", "d3-')  # the run was killed while appending its fourth batch
    resumed = cli.IngestState.for_target(tmp_path, "http://server", "big")
    assert sorted(resumed.hashes) == ["d0-0", "d0-1", "d1-0", "d1-1", "d2-0", "d2-1"]
    assert len(resumed.path.read_text().splitlines()) == 1  # compacted on load
    state.path.write_text('{"a": "1"}\nnot json\n{"b": "2"}\n')
    with pytest.raises(ValueError, match=r":2 is not valid"):
        cli.IngestState(state.path)


def test_a_state_file_of_the_older_format_is_read_and_replaced(tmp_path):
    state = cli.IngestState.for_target(tmp_path, "http://server", "old")
    state.path.with_suffix(".json").write_text(json.dumps({"hashes": {"a": "1"}}))
    assert cli.IngestState(state.path).hashes == {"a": "1"}
    assert not state.path.with_suffix(".json").exists() and json.loads(state.path.read_text()) == {"a": "1"}
