"""Splits documents into overlapping word windows that end on sentence boundaries where possible."""

from __future__ import annotations

import re

from deployments.config import ChunkingConfig
from deployments.errors import BadRequest
from deployments.models import Chunk, Document, Extraction

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n|\n(?=\s*#)|(?<=\n)(?=\s*#)")
_BREAK = "\n"  # token marking the end of a paragraph or heading: kept as a line break in chunk text
_END = "\x00"  # token marking a sentence end: a place to close a window


def _tokens(text: str) -> list[str]:
    """Words, with sentence and paragraph ends as marker tokens. A heading line is a paragraph of its own."""
    tokens: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.strip()):
        lines = paragraph.strip().splitlines()
        units = [lines[0]] + [" ".join(lines[1:])] if lines and lines[0].lstrip().startswith("#") else [" ".join(lines)]
        for unit in units:
            sentences = [s.split() for s in _SENTENCE_END.split(unit.strip()) if s.strip()]
            for sentence in sentences:
                tokens += [*sentence, _END]
            if sentences:
                tokens.append(_BREAK)
    return tokens


def _text(tokens: list[str]) -> str:
    text = " ".join(t for t in tokens if t != _END)
    return text.replace(f" {_BREAK} ", _BREAK).replace(f" {_BREAK}", "").replace(_BREAK, "\n").strip()


def chunk_document(doc: Document, config: ChunkingConfig) -> list[Chunk]:
    """Greedy packing of whole sentences into windows of at most `max_words`; a longer sentence is cut.

    Each window after the first starts with the last `overlap_words` words of the previous one, so a fact
    split across a boundary is still whole in one chunk. Chunk ids are `<doc_id>#<n>`: stable across re-ingests.
    """
    windows: list[list[str]] = []
    current: list[str] = []
    words = 0

    def close() -> None:
        nonlocal current, words
        windows.append(current)
        kept = [t for t in current if t not in (_END, _BREAK)][-config.overlap_words :] if config.overlap_words else []
        current, words = list(kept), len(kept)

    for token in _tokens(doc.text):
        if token in (_END, _BREAK):
            current.append(token)
            if token == _END and words >= config.max_words * 0.75:
                close()
            continue
        current.append(token)
        words += 1
        if words >= config.max_words:
            close()
    if words > (config.overlap_words if windows else 0):
        windows.append(current)
    texts = [_text(w) for w in windows]
    return [
        Chunk(chunk_id=f"{doc.id}#{n}", doc_id=doc.id, index=n, text=text, metadata=dict(doc.metadata))
        for n, text in enumerate(t for t in texts if t)
    ]


def chunk_documents(docs: list[Document], config: ChunkingConfig) -> tuple[list[Chunk], dict[str, list[float]]]:
    """Every document's chunks, and the vectors documents brought, by chunk id. A document with a vector is one
    chunk, its whole text (one vector cannot stand for several chunks): a text over `max_words` is refused (400),
    before any write."""
    chunks: list[Chunk] = []
    brought: dict[str, list[float]] = {}
    for doc in docs:
        if doc.vector is None:
            chunks += chunk_document(doc, config)
            continue
        words = len(doc.text.split())
        if words > config.max_words:
            raise BadRequest(
                f"document {doc.id!r} brings a vector but its text is {words} words, more than one chunk "
                f"(chunking.max_words={config.max_words}): send it without a vector, or as documents of one chunk "
                "with a vector each"
            )
        chunks.append(
            Chunk(
                chunk_id=f"{doc.id}#0",
                doc_id=doc.id,
                index=0,
                text=_text(_tokens(doc.text)),
                metadata=dict(doc.metadata),
            )
        )
        brought[chunks[-1].chunk_id] = doc.vector
    return chunks, brought


def extractions_brought(docs: list[Document]) -> dict[str, Extraction]:
    """The extractions documents brought for their one chunk (a document with a vector), by chunk id."""
    return {f"{d.id}#0": d.extraction.to_extraction(f"{d.id}#0") for d in docs if d.extraction is not None}
