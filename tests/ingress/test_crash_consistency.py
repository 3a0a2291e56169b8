"""Crash consistency of ingest without Ray: intent records, the start-up roll-back, verify and repair.
(The real kill -9 of the whole app is benchmarks/reliability/crash_ingest.py.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
from types import SimpleNamespace

from deployments.config import AppConfig
from deployments.ingress.intents import IntentLog
from deployments.ingress.pipeline import Pipeline
from deployments.models import Document, IngestRequest
from deployments.stages import Stages
from tests.ingress_harness import ingress_client


class Stores:
    """Two stores as chunk id -> doc id maps, and the graph's entities -> the chunks mentioning them."""

    def __init__(self):
        self.vector: dict[str, str] = {}
        self.graph: dict[str, str] = {}
        self.entities: dict[str, set[str]] = {}
        self.graph_gate: asyncio.Event | None = None  # set: graph writes wait for it
        self.vector_written = asyncio.Event()

    def put(self, store: dict, doc_id: str, n: int = 2) -> None:
        for i in range(n):
            store[f"{doc_id}#{i}"] = doc_id

    async def vector_upsert(self, collection, chunks, given=None):
        for c in chunks:
            self.vector[c.chunk_id] = c.doc_id
        self.vector_written.set()
        return len(chunks)

    async def graph_upsert(self, collection, chunks, given=None):
        if self.graph_gate is not None:
            await self.graph_gate.wait()
        for c in chunks:
            self.graph[c.chunk_id] = c.doc_id
            self.entities.setdefault(f"entity of {c.doc_id}", set()).add(c.chunk_id)
        return {"entities": 1, "relations": 0}

    async def _delete(self, store, doc_ids):
        gone = [c for c, d in store.items() if d in doc_ids]
        for c in gone:
            del store[c]
        return len(gone)

    async def vector_delete(self, collection, doc_ids):
        return await self._delete(self.vector, doc_ids)

    async def graph_delete(self, collection, doc_ids):
        gone = {c for c, d in self.graph.items() if d in doc_ids}
        removed = await self._delete(self.graph, doc_ids)
        # Like the real store: an entity goes with the last of the deleted chunks that mentioned it.
        self.entities = {k: v - gone for k, v in self.entities.items() if not (v & gone) or v - gone}
        return removed

    async def vector_chunk_ids(self, collection):
        return dict(self.vector)

    async def graph_chunk_ids(self, collection):
        return dict(self.graph)

    async def graph_orphans(self, collection, remove):
        orphans = sorted(k for k, chunks in self.entities.items() if not chunks & self.graph.keys())
        if remove:
            for k in orphans:
                del self.entities[k]
        return orphans

    def stages(self) -> Stages:
        async def unused(*args):
            raise AssertionError("not used here")

        return Stages(
            embedder=SimpleNamespace(ping=unused),
            vector=SimpleNamespace(
                search=unused,
                upsert=self.vector_upsert,
                delete_documents=self.vector_delete,
                count=unused,
                chunk_ids=self.vector_chunk_ids,
                ping=unused,
            ),
            graph=SimpleNamespace(
                search=unused,
                upsert=self.graph_upsert,
                delete_documents=self.graph_delete,
                counts=unused,
                chunk_ids=self.graph_chunk_ids,
                orphan_entities=self.graph_orphans,
                ping=unused,
            ),
            reranker=SimpleNamespace(rerank=unused, ping=unused),
            chat=SimpleNamespace(answer=unused, answer_stream=unused, ping=unused),
        )


def pipeline(stores: Stores, intents: IntentLog) -> Pipeline:
    return Pipeline(AppConfig.from_args({"data_dir": "/tmp/graphrag-unit"}), stores.stages(), intents)


def _as_dead(intents: IntentLog) -> None:
    """Rewrites every intent record as if its process had died (a pid that has exited)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    for path in intents.folder.glob("*.json"):
        raw = json.loads(path.read_text())
        raw["owner"]["pid"] = proc.pid
        path.write_text(json.dumps(raw))


def request(*doc_ids: str) -> IngestRequest:
    return IngestRequest(collection="c", documents=[Document(id=d, text=f"Text of {d}. More text.") for d in doc_ids])


async def test_an_ingest_between_the_two_writes_is_recorded_and_rolled_back_after_a_crash(tmp_path):
    stores, intents = Stores(), IntentLog(tmp_path / "intents")
    stores.put(stores.vector, "kept"), stores.put(stores.graph, "kept")
    stores.graph_gate = asyncio.Event()
    task = asyncio.create_task(pipeline(stores, intents).ingest(request("d1", "d2")))
    await stores.vector_written.wait()
    # The crash window: the vector store holds d1, d2; the graph store does not; the intent names them.
    [pending] = intents.pending()
    assert pending.doc_ids == ["d1", "d2"] and pending.action == "ingest"
    assert set(stores.vector.values()) == {"kept", "d1", "d2"} and set(stores.graph.values()) == {"kept"}
    # kill -9 here: the process vanishes with the record on disk (the task is dropped without its clean-up).
    task.cancel()
    snapshot = {p.name: p.read_text() for p in intents.folder.glob("*.json")}
    try:
        await task
    except asyncio.CancelledError:
        pass
    for name, text in snapshot.items():  # what the disk held at the moment of the kill
        (intents.folder / name).write_text(text)
    stores.vector.update({"d1#0": "d1", "d2#0": "d2"})  # and what the vector store held
    _as_dead(intents)

    restarted = pipeline(stores, IntentLog(tmp_path / "intents"))
    assert not (await restarted.verify("c")).consistent
    [done] = await restarted.recover()
    assert done.doc_ids == ["d1", "d2"]
    assert set(stores.vector.values()) == set(stores.graph.values()) == {"kept"}
    assert intents.pending() == []
    assert (await restarted.verify("c")).consistent
    # Re-running the same ingest converges to the clean result.
    stores.graph_gate = None
    await restarted.ingest(request("d1", "d2"))
    report = await restarted.verify("c")
    assert report.consistent and report.documents == 3 and report.vector_chunks == report.graph_chunks


async def test_a_live_process_intent_is_left_alone(tmp_path):
    stores, intents = Stores(), IntentLog(tmp_path / "intents")
    stores.put(stores.vector, "d1")
    intents.begin("ingest", "c", ["d1"])  # this process: alive
    assert await pipeline(stores, intents).recover() == []
    assert set(stores.vector.values()) == {"d1"} and len(intents.pending()) == 1


async def test_a_failed_or_cancelled_ingest_ends_its_intent_and_leaves_neither_store_written(tmp_path):
    stores, intents = Stores(), IntentLog(tmp_path / "intents")
    stores.graph_gate = asyncio.Event()
    task = asyncio.create_task(pipeline(stores, intents).ingest(request("d1")))
    await stores.vector_written.wait()
    task.cancel()  # request timeout or client gone, in a live process
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert stores.vector == {} and stores.graph == {} and intents.pending() == []


async def test_verify_finds_each_inconsistency_and_repair_removes_them(tmp_path):
    stores, intents = Stores(), IntentLog(tmp_path / "intents")
    for doc in ("good", "mismatch"):
        stores.put(stores.vector, doc), stores.put(stores.graph, doc)
    del stores.graph["mismatch#1"]
    stores.put(stores.vector, "vector-only")
    stores.put(stores.graph, "graph-only")
    stores.entities = {"orphan": {"gone#0"}, "fine": {"good#0"}}
    stores.put(stores.vector, "in-flight")  # a live ingest's first write
    intents.begin("ingest", "c", ["in-flight"])
    pipe = pipeline(stores, intents)
    report = await pipe.verify("c")
    assert not report.consistent
    assert (
        report.only_in_vector,
        report.only_in_graph,
        report.mismatched,
        report.orphan_entities,
        report.pending_intents,
    ) == (2, 1, 1, 1, 1)
    assert report.inconsistent_doc_ids == ["graph-only", "in-flight", "mismatch", "vector-only"]
    repaired = await pipe.repair("c")
    assert (
        repaired.removed_doc_ids == ["graph-only", "mismatch", "vector-only"] and repaired.removed_orphan_entities == 1
    )
    assert set(stores.vector.values()) == {"good", "in-flight"} and set(stores.graph.values()) == {"good"}
    assert stores.entities == {"fine": {"good#0"}}
    assert repaired.after.only_in_vector == 1 and repaired.after.pending_intents == 1  # the live ingest, untouched


async def test_verify_over_http(monkeypatch, tmp_path):
    stores = Stores()
    stores.put(stores.vector, "a"), stores.put(stores.graph, "a"), stores.put(stores.vector, "b")
    with ingress_client(stores.stages(), monkeypatch) as client:
        resp = await client.get("/v1/collections/c/verify")
        assert resp.status_code == 200 and resp.json()["only_in_vector"] == 1 and not resp.json()["consistent"]
        resp = await client.post("/v1/collections/c/repair")
        assert (
            resp.status_code == 200 and resp.json()["removed_doc_ids"] == ["b"] and resp.json()["after"]["consistent"]
        )


def test_ingest_cli_verify_exit_codes(capsys, monkeypatch):
    import httpx

    import deployments.cli.ingest as cli
    from deployments.client import GraphRAGClient
    from deployments.models import RepairResponse, VerifyResponse

    def report(consistent: bool) -> VerifyResponse:
        return VerifyResponse(
            collection="c",
            consistent=consistent,
            documents=2,
            vector_chunks=2,
            graph_chunks=1,
            only_in_vector=0,
            only_in_graph=0,
            mismatched=int(not consistent),
            orphan_entities=0,
            pending_intents=0,
            inconsistent_doc_ids=[] if consistent else ["d"],
            orphan_entity_keys=[],
        )

    repaired = RepairResponse(
        collection="c", removed_doc_ids=["d"], removed_documents=2, removed_orphan_entities=0, after=report(True)
    )
    answers = {
        "/v1/collections/ok/verify": report(True),
        "/v1/collections/bad/verify": report(False),
        "/v1/collections/bad/repair": repaired,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path in answers:
            return httpx.Response(200, json=answers[request.url.path].model_dump())
        return httpx.Response(404, json={"detail": "collection 'missing' does not exist"})

    monkeypatch.setattr(
        cli,
        "make_client",
        lambda url, key, timeout: GraphRAGClient(
            url, key, http_client=httpx.Client(transport=httpx.MockTransport(handler))
        ),
    )
    assert cli.main(["--verify", "--collection", "ok"]) == 0
    assert cli.main(["--verify", "--collection", "bad"]) == 3
    assert cli.main(["--repair", "--collection", "bad"]) == 0
    assert cli.main(["--verify", "--collection", "missing"]) == 1
    err = capsys.readouterr().err
    assert "re-run the ingest" in err and "HTTP 404" in err and "'missing' does not exist" in err


async def test_start_up_roll_back_retries_while_the_stores_start_and_raises_a_bug(tmp_path):
    from deployments.errors import StageUnavailable
    from deployments.ingress.deployment import recover_until_done

    class Flaky:
        def __init__(self, errors):
            self.errors, self.calls = list(errors), 0

        async def recover(self):
            self.calls += 1
            if self.errors:
                raise self.errors.pop(0)
            return []

    starting = Flaky([StageUnavailable("graph", "starting"), ConnectionError("refused")])
    await recover_until_done(starting, delay_s=0)
    assert starting.calls == 3
    buggy = Flaky([TypeError("bug")])
    try:
        await recover_until_done(buggy, delay_s=0)
    except TypeError:
        pass
    else:
        raise AssertionError("a bug in the roll-back must not be retried silently")
    assert buggy.calls == 1


async def test_not_ready_until_the_start_up_roll_back_is_done(monkeypatch):
    from tests.fakes import FakeStages

    fake = FakeStages()
    fake.down = fake.ok  # every stage answers its ping
    with ingress_client(fake.stages(), monkeypatch) as client:
        ingress = __import__("ray").serve.get_replica_context().servable_object
        gate = asyncio.Event()
        ingress.recovery = asyncio.create_task(gate.wait())
        pending = (await client.get("/readyz")).json()
        gate.set()
        await ingress.recovery
        done = (await client.get("/readyz")).json()
        ingress.recovery = asyncio.create_task(asyncio.sleep(0, result=None))
        await ingress.recovery

        async def broken():
            raise ConnectionError("stores never came up")

        ingress.recovery = asyncio.create_task(broken())
        await asyncio.sleep(0)
        failed = await client.get("/readyz")
    assert (pending["recovery"], pending["ready"]) == ("pending", False)
    assert (done["recovery"], done["ready"]) == ("done", True)
    assert failed.status_code == 503 and failed.json()["recovery"] == "failed"
