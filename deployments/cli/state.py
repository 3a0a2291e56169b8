"""graphrag-ingest's resume state: doc id -> content hash of what the server holds, for one (server, collection).

A journal: each batch the server accepted appends one JSON line of its documents' hashes, so a run of N batches
writes each hash once (rewriting the whole state after every batch made a 1M-row import quadratic). A line cut
short by an interruption is the last one: it is ignored (its batch is sent again; re-ingesting is idempotent).
Loading compacts the journal to one line; a state file of the older format (`.json`, rewritten whole) is read once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


class IngestState:
    def __init__(self, path: Path | None):
        self.path = path
        self.hashes: dict[str, str] = {}
        if path is None:
            return
        legacy = path.with_suffix(".json")
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if not lines and legacy.exists():
            lines = [json.dumps(self._load_legacy(legacy))]
        for n, line in enumerate(lines, start=1):
            try:
                self.hashes.update(json.loads(line))
            except (ValueError, TypeError) as exc:
                if n == len(lines):  # the last append was cut short
                    break
                raise ValueError(
                    f"the state file {path}:{n} is not valid ({exc}); delete it to re-ingest everything"
                ) from exc
        if len(lines) > 1 or legacy.exists():
            self._rewrite()

    @staticmethod
    def _load_legacy(path: Path) -> dict[str, str]:
        try:
            return dict(json.loads(path.read_text(encoding="utf-8"))["hashes"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"the state file {path} is not valid ({exc}); delete it to re-ingest everything") from exc

    @staticmethod
    def for_target(state_dir: Path, url: str, collection: str) -> IngestState:
        name = hashlib.sha256(f"{url.rstrip('/')}\n{collection}".encode()).hexdigest()[:16]
        return IngestState(state_dir / f"{collection}-{name}.jsonl")

    def unchanged(self, doc_id: str, digest: str) -> bool:
        return self.hashes.get(doc_id) == digest

    def record(self, digests: dict[str, str]) -> None:
        self.hashes.update(digests)
        if self.path is None or not digests:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(digests) + "\n")

    def _rewrite(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.hashes) + "\n", encoding="utf-8")
        tmp.replace(self.path)  # an interruption leaves the previous journal, never half a file
        self.path.with_suffix(".json").unlink(missing_ok=True)
