"""The chat stage without an LLM: the sentences of the top passages that share the most (rarest) query terms,
quoted with [n] citations. Also the pipeline's fallback when the chat stage fails."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import AsyncIterator

from deployments.models import ChatDelta, ChatResult
from deployments.text import split_sentences, terms

MAX_SENTENCE_CHARS = 400


def _sentences(text: str) -> list[str]:
    out = []
    for s in split_sentences(text):
        s = " ".join(s.split())
        if len(s) > MAX_SENTENCE_CHARS:
            s = s[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + "…"
        if s:
            out.append(s)
    return out


def _cite(sentence: str, n: int) -> str:
    if sentence[-1] in ".!?":
        return f"{sentence[:-1]} [{n}]{sentence[-1]}"
    return f"{sentence} [{n}]."


class ExtractiveChat:
    """No LLM: picks the sentences of the top passages that share the most (rarest) query terms and quotes
    them with [n] markers; deterministic."""

    def __init__(self, max_passages: int = 6, max_sentences: int = 3, max_facts: int = 3):
        self.max_passages = max_passages
        self.max_sentences = max_sentences
        self.max_facts = max_facts

    async def answer(self, query: str, passages: list[str], facts: list[str]) -> ChatResult:
        return ChatResult(answer=self.compose(query, passages, facts), model="extractive")

    async def open_stream(
        self, query: str, passages: list[str], facts: list[str]
    ) -> tuple[ChatDelta, AsyncIterator[ChatDelta]]:
        """The composed answer in word-sized pieces (it is computed at once; streaming keeps one wire format)."""
        pieces = [
            ChatDelta(content=p, model="extractive") for p in split_for_streaming(self.compose(query, passages, facts))
        ]

        async def rest() -> AsyncIterator[ChatDelta]:
            for piece in pieces[1:]:
                yield piece

        return pieces[0], rest()

    def compose(self, query: str, passages: list[str], facts: list[str]) -> str:
        passages = passages[: self.max_passages]
        if not passages:
            return "No passages were retrieved for this question."
        q = set(terms(query))
        split = [_sentences(p) for p in passages]
        # Rarer query terms (fewer passages contain them) weigh more.
        df = Counter(t for p in passages for t in set(terms(p)) if t in q)
        idf = {t: math.log(1 + len(passages) / df[t]) for t in df}
        candidates = []  # (score, passage index, sentence index, sentence)
        seen: set[str] = set()
        for pi, sentences in enumerate(split):
            for si, s in enumerate(sentences):
                key = s.lower()
                if key in seen:  # overlapping chunks repeat sentences
                    continue
                seen.add(key)
                score = sum(idf.get(t, 0.0) for t in set(terms(s)) & q)
                if score > 0:
                    candidates.append((score, pi, si, s))
        best = sorted(candidates, key=lambda c: (-c[0], c[1], c[2]))[: self.max_sentences]
        best.sort(key=lambda c: (c[1], c[2]))  # read in passage order
        if best:
            answer = " ".join(_cite(s, pi + 1) for _, pi, _, s in best)
        else:
            first = split[0][0] if split[0] else passages[0].strip()
            answer = f"No passage states this directly; the most relevant passage says: {_cite(first, 1)}"
        related = [f for f in facts if q & set(terms(f))][: self.max_facts]
        if related:
            answer += " Related graph facts: " + "; ".join(related) + "."
        return answer

    async def ping(self) -> str:
        return "extractive (no LLM)"

    async def aclose(self) -> None:
        return None


def split_for_streaming(text: str) -> list[str]:
    """Word-sized pieces that join back to `text` exactly."""
    return re.findall(r"\s*\S+", text) or [text]
