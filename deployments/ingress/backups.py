"""Snapshots of collections, both stores consistent with each other, and their restore into an empty data folder.

A snapshot pauses the intent log (ingress/intents.py): new ingests and deletes wait, the ones under way finish,
then each collection's Qdrant Edge shard is copied (flushed, under the vector store's write lock) and its graph
exported in one read transaction, and the log resumes. Reads go on throughout. Documents of an ingest a crash
left half-done (an intent of a dead process) are listed in the manifest and removed again on restore, as the
start-up recovery would. Snapshots live only under the backup root (`backup.root`, default <data_dir>/backups): a
request names one there, and a path that resolves elsewhere (absolute, `..`, a symlink out) is refused. Layout of a
snapshot folder:

    manifest.json                   what was taken, when, with counts
    <collection>/qdrant/            the shard's files (qdrant-edge)
    <collection>/graph.json.gz      the collection's graph (graph/backup.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from deployments.errors import BadRequest, StageUnavailable
from deployments.models import CollectionSnapshot, RestoreResponse, SnapshotResponse

log = logging.getLogger("graphrag.backups")
MANIFEST = "manifest.json"
FORMAT = 1


class Backups:
    def __init__(self, pipeline, wait_s: float = 120.0):  # pipeline: ingress.pipeline.Pipeline
        self.pipeline = pipeline
        self.root = Path(pipeline.config.backup.root)
        self.stages = pipeline.stages
        self.intents = pipeline.intents
        self.wait_s = wait_s  # for the ingests under way to finish

    @contextlib.asynccontextmanager
    async def _paused(self) -> AsyncIterator[dict[str, list[str]]]:
        """No ingest or delete runs inside; yields the documents of dead processes' intents, per collection."""
        if self.intents is None:  # no intent log (tests): nothing to pause
            yield {}
            return
        await asyncio.to_thread(self.intents.pause)
        try:
            deadline = time.monotonic() + self.wait_s
            while await asyncio.to_thread(self.intents.live):
                if time.monotonic() > deadline:
                    raise StageUnavailable(
                        "ingest", f"ingests still running after {self.wait_s:g}s; the snapshot was not taken"
                    )
                await asyncio.sleep(0.05)
            half_done: dict[str, list[str]] = {}
            for intent in await asyncio.to_thread(self.intents.orphaned):
                half_done.setdefault(intent.collection, []).extend(intent.doc_ids)
            yield half_done
        finally:
            await asyncio.to_thread(self.intents.resume)

    async def snapshot(self, dest: str, collections: list[str] | None = None) -> SnapshotResponse:
        started = time.monotonic()
        folder = self._inside_root(dest)
        if folder.exists() and any(folder.iterdir()):
            raise BadRequest(f"{folder} is not empty: a snapshot goes into a new or empty folder")
        names = (
            collections if collections is not None else [s.collection for s in await self.stages.vector.collections()]
        )
        taken: dict[str, CollectionSnapshot] = {}
        async with self._paused() as half_done:
            for name in names:
                (folder / name).mkdir(parents=True, exist_ok=True)
                vector_bytes, graph, points = await asyncio.gather(
                    self.stages.vector.snapshot(name, str(folder / name / "qdrant")),
                    self.stages.graph.export_collection(name, str(folder / name / "graph.json.gz")),
                    self.stages.vector.count(name),
                )
                graph_bytes = graph.pop("bytes")
                taken[name] = CollectionSnapshot(
                    points=points,
                    vector_bytes=vector_bytes,
                    graph_bytes=graph_bytes,
                    graph=graph,
                    roll_back=sorted(set(half_done.get(name, []))),
                )
        manifest = {
            "format": FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "collections": {n: c.model_dump() for n, c in taken.items()},
        }
        await asyncio.to_thread((folder / MANIFEST).write_text, json.dumps(manifest, indent=2), "utf-8")
        seconds = round(time.monotonic() - started, 2)
        log.info("snapshot of %s into %s in %.1fs", ", ".join(names) or "no collections", folder, seconds)
        return SnapshotResponse(dir=str(folder), seconds=seconds, collections=taken)

    async def restore(self, src: str, collections: list[str] | None = None) -> RestoreResponse:
        """Each collection's graph first (one transaction: all or nothing), then its shard (appears whole or not
        at all); a shard that fails takes the restored graph out again. Both must not hold the collection."""
        started = time.monotonic()
        folder = self._inside_root(src)
        try:
            manifest = json.loads(await asyncio.to_thread((folder / MANIFEST).read_text, "utf-8"))
        except FileNotFoundError:
            raise BadRequest(f"{folder} holds no snapshot ({MANIFEST} is missing)") from None
        held = manifest["collections"]
        names = collections if collections is not None else sorted(held)
        missing = [n for n in names if n not in held]
        if missing:
            raise BadRequest(f"the snapshot in {folder} has no collection {', '.join(missing)}")
        restored = {}
        async with self._paused():
            for name in names:
                await self.stages.graph.import_collection(name, str(folder / name / "graph.json.gz"))
                try:
                    await self.stages.vector.restore(name, str(folder / name / "qdrant"))
                except BaseException:
                    doc_ids = sorted(set((await self.stages.graph.chunk_ids(name)).values()))
                    await self.stages.graph.delete_documents(name, doc_ids)
                    raise
                if held[name]["roll_back"]:
                    await self.pipeline._remove_strictly(name, held[name]["roll_back"])
                restored[name] = await self.pipeline.verify(name)
        seconds = round(time.monotonic() - started, 2)
        log.info("restored %s from %s in %.1fs", ", ".join(names), folder, seconds)
        return RestoreResponse(dir=str(folder), seconds=seconds, collections=restored)

    def _inside_root(self, name: str) -> Path:
        """The snapshot folder `name` names: relative to the backup root, or an absolute path inside it. Resolved
        (`..` and symlinks followed) before the check, so no spelling reaches outside; refused before anything is
        written or read."""
        root = self.root.resolve()
        folder = (root / name).resolve()  # an absolute `name` replaces the root here, and is checked the same
        if folder == root or not folder.is_relative_to(root):
            raise BadRequest(
                f"{name!r} is outside the backup root: a snapshot is a folder inside {root} (backup.root), named "
                "relative to it ('..' and symlinks may not lead out of it)"
            )
        return folder
