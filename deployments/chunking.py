"""Splits documents into overlapping word windows that end on sentence boundaries where possible."""
from __future__ import annotations

import re

from deployments.config import ChunkingConfig
from deployments.models import Chunk, Document

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str) -> list[list[str]]:
    return [s.split() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def chunk_document(doc: Document, config: ChunkingConfig) -> list[Chunk]:
    """Greedy packing of whole sentences into windows of at most `max_words`; a longer sentence is cut.

    Each window after the first starts with the last `overlap_words` words of the previous one, so a fact
    split across a boundary is still whole in one chunk. Chunk ids are `<doc_id>#<n>`: stable across re-ingests.
    """
    step_words: list[str] = []
    for sentence in _sentences(doc.text):
        step_words.extend(sentence)
        step_words.append("\x00")  # sentence boundary marker
    windows: list[list[str]] = []
    current: list[str] = []
    for token in step_words:
        if token == "\x00":
            if len(current) >= config.max_words * 0.75:
                windows.append(current)
                current = current[-config.overlap_words :] if config.overlap_words else []
            continue
        current.append(token)
        if len(current) >= config.max_words:
            windows.append(current)
            current = current[-config.overlap_words :] if config.overlap_words else []
    tail_is_new = current and (not windows or len(current) > config.overlap_words)
    if tail_is_new:
        windows.append(current)
    return [
        Chunk(chunk_id=f"{doc.id}#{n}", doc_id=doc.id, index=n, text=" ".join(words), metadata=dict(doc.metadata))
        for n, words in enumerate(windows)
    ]
