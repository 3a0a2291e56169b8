"""`graphrag-ingest`: ingest a folder (md, txt, html), a BEIR corpus.jsonl(.gz), or rows with their own vectors.

    graphrag-ingest docs/ --url http://127.0.0.1:8000 --collection demo
    graphrag-ingest corpus.jsonl.gz --collection scifact --batch-size 64
    graphrag-ingest rows.parquet --collection big --batch-size 256   # rows {id, text, metadata, vector} (cli/rows.py)
    graphrag-ingest corpus.jsonl.gz --ray auto   # chunk, embed and extract on every node of a Ray cluster (bulk/)
    graphrag-ingest --verify --collection demo            # after a crash: do both stores agree? (exit 3 if not)
    graphrag-ingest --repair --collection demo            # remove what they disagree on, then re-run the ingest
    graphrag-ingest --snapshot 2026-12-05     # both stores of every collection (or --collection C), into the
    graphrag-ingest --restore 2026-12-05      # server's backup root; a restore goes into a server lacking them

Documents go in batches to POST /v1/ingest, through the Python client (deployments/client). A state file (in --state-dir, default ~/.cache/graphrag-ingest,
never the repository) records each ingested document's content hash after every successful batch, so an
unchanged document is skipped and a run that was interrupted resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from deployments.cli.rows import json_lines, read_jsonl_rows, read_parquet_rows
from deployments.cli.state import IngestState
from deployments.client import (
    APIConnectionError,
    APIStatusError,
    GraphRAGClient,
    GraphRAGError,
)
from deployments.models import (
    DEFAULT_COLLECTION,
    MAX_DOCUMENT_CHARS,
    MAX_DOCUMENTS_PER_INGEST,
    IngestResponse,
    RepairResponse,
)

FOLDER_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}
DEFAULT_STATE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "graphrag-ingest"
MAX_BATCH_CHARS = 4_000_000  # keeps one request body well under what a proxy would refuse
RETRY_STATUSES = {429, 502, 503, 504}  # 429 and 503 after the client's own retries


# ---- reading documents ---------------------------------------------------------------------------


class _TextOfHtml(HTMLParser):
    """Visible text of an HTML page: script/style dropped, block elements end lines."""

    _SKIP = {"script", "style", "noscript", "template", "head"}
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP and self._skip:
            self._skip -= 1
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> tuple[str, str]:
    """(title, text) of an HTML document."""
    parser = _TextOfHtml()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return " ".join(parser.title.split()), html.unescape("\n".join(line for line in lines if line))


def read_folder(root: Path) -> Iterator[dict]:
    """Every md/txt/html file under `root` (sorted, hidden entries skipped); the id is the relative path."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or path.suffix.lower() not in FOLDER_SUFFIXES
            or any(p.startswith(".") for p in rel.parts)
        ):
            continue
        raw = path.read_text(encoding="utf-8", errors="replace")
        metadata: dict[str, Any] = {"source": rel.as_posix()}
        if path.suffix.lower() in {".html", ".htm"}:
            title, raw = html_to_text(raw)
            if title:
                metadata["title"] = title
                raw = f"{title}\n\n{raw}"
        yield {"id": rel.as_posix(), "text": raw, "metadata": metadata}


def read_beir_corpus(path: Path) -> Iterator[dict]:
    """BEIR corpus lines {"_id", "title", "text", "metadata"?}: the title leads the text, as BEIR evaluates it."""
    for n, line in json_lines(path):
        try:
            row = json.loads(line)
            doc_id = str(row["_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a BEIR corpus line ({type(exc).__name__}: {exc})") from exc
        title = str(row.get("title") or "").strip()
        text = str(row.get("text") or "")
        metadata = {k: v for k, v in (row.get("metadata") or {}).items() if isinstance(v, (str, int, float, bool))}
        if title:
            metadata["title"] = title
        yield {"id": doc_id, "text": f"{title}\n\n{text}" if title else text, "metadata": metadata}


def _is_beir(path: Path) -> bool:
    """Whether a JSONL file holds BEIR corpus lines (`_id`) rather than bulk rows (`id`): its first line says."""
    lines = json_lines(path)
    first = next(lines, (0, ""))[1]
    lines.close()
    try:
        return "_id" in json.loads(first)
    except (ValueError, TypeError):
        return False  # the row reader names the line


def read_source(path: Path) -> Iterator[dict]:
    if path.is_dir():
        return read_folder(path)
    if path.suffix.lower() == ".parquet":
        return read_parquet_rows(path)
    if re.search(r"\.jsonl(\.gz)?$", path.name):
        return read_beir_corpus(path) if _is_beir(path) else read_jsonl_rows(path)
    raise ValueError(f"{path}: expected a folder, a BEIR corpus.jsonl(.gz), or rows in .jsonl(.gz) or .parquet")


def content_hash(doc: dict) -> str:
    fields = {"text": doc["text"], "metadata": doc.get("metadata") or {}}
    if doc.get("vector") is not None:  # a new vector for the same text is a change too
        fields["vector"] = doc["vector"]
    payload = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


# ---- ingesting ------------------------------------------------------------------------------------


@dataclass
class IngestReport:
    sent: int = 0
    skipped_unchanged: int = 0
    skipped_invalid: list[str] = field(default_factory=list)
    chunks: int = 0
    entities: int = 0
    relations: int = 0
    seconds: float = 0.0


class IngestError(RuntimeError):
    pass


def _batches(docs: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    chars = 0
    for doc in docs:
        # A vector's value is up to ~20 characters of JSON.
        size_of = len(doc["text"]) + 20 * len(doc.get("vector") or ())
        if batch and (len(batch) >= size or chars + size_of > MAX_BATCH_CHARS):
            yield batch
            batch, chars = [], 0
        batch.append(doc)
        chars += size_of
    if batch:
        yield batch


def _post(client: GraphRAGClient, collection: str, batch: list[dict], attempts: int) -> IngestResponse:
    """One batch; the client waits out 429 and 503 (Retry-After), this retries a lost connection and a gateway
    that gave up (the server removes a timed-out ingest's documents, so resending is safe)."""
    for attempt in range(1, attempts + 1):
        try:
            return client.ingest(batch, collection)
        except (APIConnectionError, APIStatusError) as exc:
            if isinstance(exc, APIStatusError):
                if exc.status_code not in RETRY_STATUSES or attempt == attempts:
                    raise IngestError(f"POST /v1/ingest answered {exc.status_code}: {exc.detail}") from exc
            elif attempt == attempts:
                raise IngestError(f"cannot reach the server: {exc}") from exc
        except ValidationError as exc:  # checked by the client with the API's own model, before sending
            raise IngestError(f"a batch the API would refuse: {exc}") from exc
        time.sleep(min(30.0, 2.0**attempt))
    raise AssertionError("unreachable")


def ingest(
    client: GraphRAGClient,
    collection: str,
    docs: Iterable[dict],
    state: IngestState,
    batch_size: int = 32,
    attempts: int = 4,
    progress: bool = True,
    total: int | None = None,
) -> IngestReport:
    """Sends the changed documents in batches; the state is saved after each batch the server accepted."""
    from tqdm import tqdm

    report = IngestReport()
    started = time.perf_counter()
    size = max(1, min(batch_size, MAX_DOCUMENTS_PER_INGEST))

    def todo() -> Iterator[dict]:
        seen: set[str] = set()
        for doc in docs:
            text = doc["text"]
            if doc["id"] in seen or not text.strip() or len(text) > MAX_DOCUMENT_CHARS:
                report.skipped_invalid.append(doc["id"])  # duplicate id, empty, or over the API's limit
                bar.update(1)
                continue
            seen.add(doc["id"])
            digest = content_hash(doc)
            if state.unchanged(doc["id"], digest):
                report.skipped_unchanged += 1
                bar.update(1)
                continue
            yield {**doc, "_hash": digest}

    with tqdm(total=total, unit="doc", disable=not progress, file=sys.stderr, desc=f"ingest {collection}") as bar:
        for batch in _batches(todo(), size):
            body = [{k: v for k, v in d.items() if k != "_hash"} for d in batch]
            result = _post(client, collection, body, attempts)
            state.record({d["id"]: d["_hash"] for d in batch})
            report.sent += len(batch)
            report.chunks += result.chunks
            report.entities += result.entities
            report.relations += result.relations
            bar.update(len(batch))
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def ingest_on_cluster(
    client: GraphRAGClient, collection: str, docs: Iterable[dict], address: str, data_dir: str, attempts: int = 4
) -> IngestReport:
    """`--ray`: one worker per node of the Ray cluster at `address` chunks, embeds and extracts (deployments/bulk/);
    each group of one-chunk documents is posted as it is ready, and the server only writes. Every document is sent
    (no resume state); the workers read their settings (model, chunking, extractor) from GRAPHRAG_* like the server."""
    import ray

    from deployments.bulk.cluster import alive_nodes, spread, start_workers

    report = IngestReport()

    def write(batch: list[dict]) -> None:
        result = _post(client, collection, batch, attempts)
        report.chunks += result.chunks
        report.entities += result.entities
        report.relations += result.relations

    ray.init(address=address)
    try:
        bulk = spread(docs, write, start_workers({"data_dir": data_dir}, alive_nodes()))
    finally:
        ray.shutdown()
    report.sent, report.seconds = bulk.rows, round(bulk.seconds, 3)
    return report


def _report(client: httpx.Client, method: str, path: str, body: dict | None = None) -> dict | None:
    """The server's JSON answer to an admin call, printed; None (said on stderr) when it did not answer 200."""
    try:
        resp = client.request(method, path, json=body)
    except httpx.TransportError as exc:
        print(f"graphrag-ingest: cannot reach the server: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    if resp.status_code != 200:
        print(f"graphrag-ingest: {method} {path} answered {resp.status_code}: {resp.text[:500]}", file=sys.stderr)
        return None
    report = resp.json()
    print(json.dumps(report, indent=2))
    return report


def check_consistency(client: GraphRAGClient, collection: str, repair: bool) -> int:
    """Prints the server's consistency report (GET /v1/collections/C/verify, or POST .../repair); 0 when the
    stores agree, 3 when they do not, 1 when the server could not tell."""
    try:
        body = client.repair(collection) if repair else client.verify(collection)
    except GraphRAGError as exc:
        print(f"graphrag-ingest: {exc}", file=sys.stderr)
        return 1
    print(body.model_dump_json(indent=2))
    report = body.after if isinstance(body, RepairResponse) else body
    if isinstance(body, RepairResponse) and body.removed_documents:
        print(
            f"graphrag-ingest: removed {body.removed_documents} documents from both stores: re-run the ingest",
            file=sys.stderr,
        )
    return 0 if report.consistent else 3


def make_client(url: str, api_key: str | None, timeout: float) -> GraphRAGClient:
    return GraphRAGClient(url, api_key, timeout=timeout)


def backup(client: httpx.Client, action: str, name: str, collection: str | None) -> int:
    """POST /v1/admin/snapshot or /restore of the snapshot `name` (a folder in the server's backup root, on its
    machine); prints the report. 0 when done (and, for a restore, every collection consistent), 3 when a restored
    collection is not, 1 on failure (also a name outside the root: 400)."""
    body = {"dir": name, "collections": [collection] if collection else None}
    report = _report(client, "POST", f"/v1/admin/{action}", body)
    if report is None:
        return 1
    if action == "restore" and not all(c["consistent"] for c in report["collections"].values()):
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphrag-ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source",
        type=Path,
        nargs="?",
        help="a folder of .md/.txt/.html files, a BEIR corpus.jsonl(.gz), or rows {id, text, metadata, vector} "
        "in .jsonl(.gz) or .parquet",
    )
    parser.add_argument(
        "--verify", action="store_true", help="check that both stores hold the same chunks per document (no ingest)"
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="remove the documents the stores disagree on and orphan entities (no ingest)",
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the graphrag-serve base URL")
    parser.add_argument(
        "--snapshot",
        metavar="NAME",
        help="copy both stores of every collection (or --collection) into NAME, a new folder in the server's backup "
        "root (backup.root, default <data_dir>/backups)",
    )
    parser.add_argument(
        "--restore",
        metavar="NAME",
        help="load the snapshot NAME's collections (or --collection), from the server's backup root, into a server "
        "that lacks them",
    )
    parser.add_argument(
        "--collection", default=None, help=f"default: {DEFAULT_COLLECTION} (for --snapshot / --restore: all)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help=f"documents per request (at most {MAX_DOCUMENTS_PER_INGEST})"
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="where the resume/skip state lives")
    parser.add_argument("--no-state", action="store_true", help="send every document and record nothing")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    parser.add_argument(
        "--api-key", default=os.environ.get("GRAPHRAG_API_KEY"), help="bearer token (default: $GRAPHRAG_API_KEY)"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="chunk, embed and extract on every node of this Ray cluster ('auto': the one this machine is in), one "
        "worker per node; the server only writes; no resume state",
    )
    parser.add_argument("--ray-data-dir", default="data", help="the workers' folder for the exported ONNX model")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    if args.snapshot or args.restore:
        with httpx.Client(base_url=args.url, timeout=args.timeout, headers=headers) as client:
            action, folder = ("snapshot", args.snapshot) if args.snapshot else ("restore", args.restore)
            return backup(client, action, folder, args.collection)
    args.collection = args.collection or DEFAULT_COLLECTION
    if args.verify or args.repair:
        with make_client(args.url, args.api_key, args.timeout) as client:
            return check_consistency(client, args.collection, args.repair)
    if args.source is None:
        parser.error("a source is required (or --verify / --repair)")

    try:  # a first pass reads every row: a bad one stops the run before anything is sent (and gives the total)
        total = sum(1 for _ in read_source(args.source))
    except (OSError, ValueError) as exc:
        print(f"graphrag-ingest: {exc}", file=sys.stderr)
        return 2
    state = IngestState(None) if args.no_state else IngestState.for_target(args.state_dir, args.url, args.collection)
    try:
        with make_client(args.url, args.api_key, args.timeout) as client:
            if args.ray:
                report = ingest_on_cluster(
                    client, args.collection, read_source(args.source), args.ray, args.ray_data_dir
                )
                print(json.dumps({"collection": args.collection, **report.__dict__}))
                return 0
            report = ingest(
                client,
                args.collection,
                read_source(args.source),  # read again as it is sent: memory stays bounded for any size
                state,
                args.batch_size,
                progress=not args.no_progress,
                total=total,
            )
    except (IngestError, OSError, ValueError) as exc:  # ValueError: the source changed since the first pass
        print(f"graphrag-ingest: {exc}; documents already accepted are recorded, run again to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("graphrag-ingest: interrupted; run again to resume", file=sys.stderr)
        return 130
    print(json.dumps({"collection": args.collection, **report.__dict__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
