"""Write-ahead intent records, so that an ingest or a delete interrupted by a crash converges at the next start.

The two stores cannot share a transaction. Before the ingress writes documents to them (or deletes documents
from them) it records the intent — collection, document ids, its own process — in a file under
`<data_dir>/intents/`, fsynced; once both stores agree (written, rolled back or deleted), the file is removed.
A file that outlives its process therefore names exactly the documents that may be in one store only. At start,
each ingress replica rolls those back: it deletes the documents from both stores (idempotent), then removes the
file. A rolled-back document is absent from both stores; re-running the same ingest writes it again (the ingest
client resends every batch it has no acknowledgement for). A collection drop's record is finished instead (it
names no documents): the collection is dropped from both stores.

A snapshot (ingress/backups.py) pauses the log: while its `snapshot.pause` file names a live process, `begin`
waits, and the snapshot starts once no live intent is pending. Each side writes its own file first and then
looks for the other's, so an ingest and a snapshot never both go ahead: the stores' copies agree.

Only files of dead processes on this host are rolled back: a live replica's in-flight ingest is left alone, and
a process id reused after a reboot is told apart by its start time. The folder is node-local: on a multi-node
cluster, put `data_dir` on a volume every ingress replica shares, or run `graphrag-ingest --verify --repair`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from deployments.errors import BadRequest, StageUnavailable, StorageFull, is_disk_full

log = logging.getLogger("graphrag.intents")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name may hold spaces and ")"


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def owner_alive(owner: dict) -> bool:
    """Whether the process that wrote an intent still runs (a process on another host is assumed alive)."""
    if owner.get("host") != socket.gethostname():
        return True
    started = _start_time(int(owner.get("pid", -1)))
    return started is not None and started == owner.get("started")


@dataclass(frozen=True)
class Intent:
    path: Path
    action: str  # "ingest" or "delete" (rolled back at start), or "drop" (a collection's; finished at start)
    collection: str
    doc_ids: list[str]
    owner: dict


PAUSE = "snapshot.pause"  # not *.json: never read as an intent


class IntentLog:
    def __init__(self, folder: str | Path, pause_wait_s: float = 300.0):
        self.folder = Path(folder)
        self.pause_wait_s = pause_wait_s  # how long `begin` waits for a snapshot before giving up (503)

    def begin(self, action: str, collection: str, doc_ids: list[str]) -> Path:
        """Records the intent durably (file and folder fsynced) before any store is touched; waits while a
        snapshot runs."""
        deadline = time.monotonic() + self.pause_wait_s
        while True:
            try:
                path = self._record(action, collection, doc_ids)
            except OSError as exc:
                if is_disk_full(exc):  # nothing written yet: refuse the write clearly
                    raise StorageFull("ingest", f"the intent log {self.folder}: {exc}") from exc
                raise
            if not self.paused():
                return path
            self.end(path)  # a snapshot began meanwhile; no store was touched: withdraw, wait, record again
            while self.paused():
                if time.monotonic() > deadline:
                    raise StageUnavailable(
                        "ingest",
                        f"a snapshot or restore has paused writes for over {self.pause_wait_s:g}s; retry later",
                    )
                time.sleep(0.05)

    def paused(self) -> bool:
        try:
            owner = json.loads((self.folder / PAUSE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except ValueError:  # being written
            return True
        return owner_alive(owner)  # a snapshot whose process died pauses nothing

    def pause(self) -> None:
        """Stops new intents (a snapshot or restore begins); the caller then waits for `live()` to empty."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.paused():
            raise BadRequest("another snapshot or restore is running; retry when it is done")
        tmp = self.folder / f"{PAUSE}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(_owner()), encoding="utf-8")
        tmp.replace(self.folder / PAUSE)
        self._sync_folder()

    def resume(self) -> None:
        (self.folder / PAUSE).unlink(missing_ok=True)
        self._sync_folder()

    def live(self) -> list[Intent]:
        """Intents of running processes: ingests and deletes under way."""
        return [i for i in self.pending() if owner_alive(i.owner)]

    def _record(self, action: str, collection: str, doc_ids: list[str]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{action}-{uuid.uuid4().hex}.json"
        tmp = path.with_suffix(".tmp")
        body = json.dumps({"action": action, "collection": collection, "doc_ids": doc_ids, "owner": _owner()})
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        self._sync_folder()
        return path

    def end(self, path: Path) -> None:
        """Both stores agree on these documents again."""
        path.unlink(missing_ok=True)
        self._sync_folder()

    def pending(self) -> list[Intent]:
        """Every recorded intent (live or not). A `.tmp` file cut short by a crash before its rename is never read:
        no store was touched for it."""
        out = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.exists() else []:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                out.append(Intent(path, raw["action"], raw["collection"], list(raw["doc_ids"]), dict(raw["owner"])))
            except FileNotFoundError:  # ended meanwhile
                continue
            except (ValueError, KeyError, TypeError) as exc:
                log.error("unreadable intent record %s (%s): left for an operator", path, exc)
        return out

    def orphaned(self) -> list[Intent]:
        """Intents whose process is gone: their documents may be in one store only."""
        return [i for i in self.pending() if not owner_alive(i.owner)]

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
