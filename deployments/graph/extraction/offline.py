"""Offline entity and relation extraction (no LLM, no model): named spans, acronyms, quoted terms and
frequent noun-ish phrases of a chunk, linked by sentence co-occurrence, like GraphRAG's "fast" indexing."""

from __future__ import annotations

import re
from collections import Counter
from itertools import combinations

from deployments.models import Chunk, Entity, Extraction, Relation
from deployments.text import NAME_TOKEN, STOP_WORDS, normalize_name, split_sentences

# The only entity types this extractor emits; the graph stores them as data, never as labels.
ENTITY_TYPES = ("ACRONYM", "ENTITY", "TERM", "CONCEPT")
RELATION_TYPE = "CO_OCCURS"
MAX_ENTITIES_PER_CHUNK = 20
MAX_RELATIONS_PER_CHUNK = 64
MAX_QUERY_KEYS = 1024
MAX_NAME_WORDS = 6

# Lower-case words that may sit inside a capitalized name: "Bank of England", "Ludwig van Beethoven".
_NAME_CONNECTORS = frozenset("of de del della da di van von der den du la le al bin".split())

_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»\n]{2,80})[\"“”«»]")
# Verbs that follow a sentence's subject: "Leland is a town", "Gallu was a demon". A lone capitalized word before
# one (or before a parenthesis: "Leland (pop. 13,527) is") names what the sentence is about, not grammar.
_SUBJECT_VERBS = frozenset("is was are were has had have".split())
_POSSESSIVE = re.compile(r"['’]s$")


def _is_acronym(token: str) -> bool:
    letters = [ch for ch in token if ch.isalpha()]
    core = token[:-1] if token.endswith("s") else token  # "GPUs"
    return len(letters) >= 2 and sum(ch.isupper() for ch in core) >= 2 and core.replace(".", "").isupper()


def _is_capitalized(token: str) -> bool:
    return token[0].isupper()


def _has_inner_caps_or_digits(token: str) -> bool:
    return any(ch.isupper() or ch.isdigit() for ch in token[1:])


class _Found:
    __slots__ = ("type", "surfaces", "sentences", "count", "first")

    def __init__(self, type_: str, first: int):
        self.type = type_
        self.surfaces: Counter[str] = Counter()
        self.sentences: set[int] = set()
        self.count = 0
        self.first = first


_TYPE_RANK = {t: i for i, t in enumerate(ENTITY_TYPES)}


def _tokens_and_gaps(sentence: str) -> tuple[list[str], list[str]]:
    """The sentence's name tokens and, for each, the text between it and the token before ("" for the first)."""
    tokens, gaps, end = [], [], 0
    for m in NAME_TOKEN.finditer(sentence):
        tokens.append(m.group())
        gaps.append(sentence[end : m.start()] if tokens[:-1] else "")
        end = m.end()
    return tokens, gaps


def _is_subject(tokens: list[str], gaps: list[str], end: int) -> bool:
    """The name ending before token `end` is followed by a subject's verb or a parenthesis."""
    if end >= len(tokens):
        return False
    return tokens[end] in _SUBJECT_VERBS or "(" in gaps[end]


def _subject_end(tokens: list[str], gaps: list[str]) -> int:
    """Where a first sentence's opening names end: at its first lower-case word (not a name connector). The
    names before it (and the one right before a subject verb, see extract) are what the chunk is about:
    "Leland is a town in Brunswick County" is about Leland, not Brunswick County; a title line is all names."""
    for k, token in enumerate(tokens):
        if token.islower() and token not in _NAME_CONNECTORS:
            return k
    return len(tokens)


def _name_spans(
    tokens: list[str], known_midsentence: set[str], gaps: list[str] | None = None
) -> list[tuple[int, list[str]]]:
    """Runs of capitalized words (with name connectors inside), each as (start index, tokens).

    Punctuation between two words ends a name ("Leland, North Carolina" is two; "Airport (Louisiana)" too). A
    lone sentence-initial word is grammar ("Officials met") unless it is seen mid-sentence elsewhere, has inner
    capitals or digits, is followed by a subject's verb or a parenthesis ("Leland is a town"), or the sentence is
    a heading (no lower-case word at all).
    """
    gaps = gaps if gaps is not None else [" "] * len(tokens)
    heading = bool(tokens) and not any(t.islower() and t not in _NAME_CONNECTORS for t in tokens)
    spans: list[tuple[int, list[str]]] = []
    i = 0
    while i < len(tokens):
        if not _is_capitalized(tokens[i]) or _is_acronym(tokens[i]):
            i += 1
            continue
        j = i + 1
        while j < len(tokens) and len(tokens[i:j]) < MAX_NAME_WORDS:
            if _POSSESSIVE.search(tokens[j - 1]) or tokens[j] == tokens[j - 1] or gaps[j].strip():
                break  # "ArcadeDB's Bolt" is two names; "ArcadeDB ArcadeDB" (a heading run into text) is one
            if _is_capitalized(tokens[j]) and not _is_acronym(tokens[j]):
                j += 1
            elif (
                tokens[j] in _NAME_CONNECTORS and j + 1 < len(tokens) and _is_capitalized(tokens[j + 1])
                and not _is_acronym(tokens[j + 1]) and not gaps[j + 1].strip()
            ):  # fmt: skip
                j += 2
            else:
                break
        span = [_POSSESSIVE.sub("", t) for t in tokens[i:j]]
        start = i
        # A sentence-initial stop word is just capitalized grammar: "The Bank of England" -> "Bank of England".
        while span and span[0].casefold() in STOP_WORDS:
            span = span[1:]
            start += 1
        if span:
            lone = len(span) == 1
            sentence_initial = start == 0
            if (
                not (lone and sentence_initial) or span[0] in known_midsentence or _has_inner_caps_or_digits(span[0])
                or heading or _is_subject(tokens, gaps, j)
            ):  # fmt: skip
                spans.append((start, span))
        i = j
    return spans


def extract(chunk: Chunk) -> Extraction:
    """Entities (capped per chunk) and CO_OCCURS relations of one chunk; deterministic for the same text.

    Two entities are related when they appear in the same sentence of the chunk; the weight counts those
    sentences. Sentence windows keep the graph sparse enough for multi-hop expansion.
    """
    raw_sentences = split_sentences(chunk.text)
    tokenized = [_tokens_and_gaps(s) for s in raw_sentences]
    sentences = [tokens for tokens, _ in tokenized]
    # Capitalized words seen after a sentence's first word: real names, not sentence-initial grammar.
    midsentence = {tok for toks in sentences for tok in toks[1:] if _is_capitalized(tok)}
    found: dict[str, _Found] = {}
    position = 0

    def add(surface: str, type_: str, sentence: int) -> None:
        nonlocal position
        key = normalize_name(surface)
        if not key or key in STOP_WORDS or len(key) < 2 or key.isdigit():
            return
        item = found.get(key)
        if item is None:
            item = found[key] = _Found(type_, position)
        elif _TYPE_RANK[type_] < _TYPE_RANK[item.type]:
            item.type = type_
        item.surfaces[surface] += 1
        item.sentences.add(sentence)
        item.count += 1
        position += 1

    subject_end = _subject_end(*tokenized[0]) if tokenized else 0
    lead_keys: set[str] = set()  # the names of the first sentence's subject: what the chunk is about
    for s_idx, (tokens, gaps) in enumerate(tokenized):
        for k, token in enumerate(tokens):
            if _is_acronym(token):
                add(token, "ACRONYM", s_idx)
                if s_idx == 0 and k < subject_end:
                    lead_keys.add(normalize_name(token))
        for start, span in _name_spans(tokens, midsentence, gaps):
            add(" ".join(span), "ENTITY", s_idx)
            if s_idx == 0 and (start < subject_end or _is_subject(tokens, gaps, start + len(span))):
                lead_keys.add(normalize_name(" ".join(span)))
        for quoted in _QUOTED.finditer(raw_sentences[s_idx]):
            words = NAME_TOKEN.findall(quoted.group(1))
            if 1 <= len(words) <= MAX_NAME_WORDS:
                add(" ".join(words), "TERM", s_idx)
                before = len(NAME_TOKEN.findall(raw_sentences[s_idx][: quoted.start()]))
                if s_idx == 0 and before < subject_end:
                    lead_keys.add(normalize_name(" ".join(words)))

    # Frequent content phrases: lower-case words (and adjacent pairs) seen at least twice in the chunk.
    unigrams: Counter[str] = Counter()
    bigrams: Counter[str] = Counter()
    where: dict[str, set[int]] = {}
    lowercase_words = {tok for toks in sentences for tok in toks if tok.islower()}
    for s_idx, tokens in enumerate(sentences):
        if tokens and tokens[0].lower() in lowercase_words:
            tokens = [tokens[0].lower(), *tokens[1:]]  # "Graph databases ..." starts a sentence, names nothing
        content = [t if (t.islower() and t.isalpha() and len(t) >= 3 and t not in STOP_WORDS) else None for t in tokens]
        for k, tok in enumerate(content):
            if tok is None:
                continue
            if len(tok) >= 4:
                unigrams[tok] += 1
                where.setdefault(tok, set()).add(s_idx)
            if k + 1 < len(content) and content[k + 1] is not None:
                pair = f"{tok} {content[k + 1]}"
                bigrams[pair] += 1
                where.setdefault(pair, set()).add(s_idx)
    frequent_pairs = {p: n for p, n in bigrams.items() if n >= 2}
    covered = Counter(w for p, n in frequent_pairs.items() for w in p.split() for _ in range(n))
    for phrase, n in list(frequent_pairs.items()) + [(w, n) for w, n in unigrams.items() if n >= 2]:
        if " " not in phrase and covered[phrase] >= n:
            continue  # only ever seen inside a frequent pair: the pair is the concept
        for s_idx in sorted(where[phrase]):
            if phrase not in found or s_idx not in found[phrase].sentences:
                add(phrase, "CONCEPT", s_idx)
        if phrase in found:
            found[phrase].count = max(found[phrase].count, n)

    ranked = sorted(found.items(), key=lambda kv: (kv[1].type == "CONCEPT", -kv[1].count, kv[1].first))
    kept = dict(ranked[:MAX_ENTITIES_PER_CHUNK])
    if not lead_keys & kept.keys():  # no named subject found: the whole first sentence, as before
        lead_keys = {key for key, item in kept.items() if 0 in item.sentences}
    entities = [
        Entity(
            key=key,
            name=max(item.surfaces.items(), key=lambda s: (s[1], -len(s[0])))[0],
            type=item.type,
            lead=key in lead_keys,
        )  # fmt: skip
        for key, item in kept.items()
    ]

    together: Counter[tuple[str, str]] = Counter()
    for s_idx in range(len(sentences)):
        present = sorted(key for key, item in kept.items() if s_idx in item.sentences)
        for a, b in combinations(present, 2):
            together[(a, b)] += 1
    pairs = sorted(together.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_RELATIONS_PER_CHUNK]
    relations = [Relation(source=a, target=b, type=RELATION_TYPE, weight=float(n)) for (a, b), n in pairs]
    return Extraction(chunk_id=chunk.chunk_id, entities=entities, relations=relations)


def query_keys(query: str) -> list[str]:
    """Candidate linking keys of a query: its normalized 1..4-word n-grams, shortest first (a cap drops long ones).

    N-grams that start or end with a stop word are dropped ("bank of england" stays, "of england" does not);
    a trailing plural "s" also yields the singular form, so "graph databases" links "graph database".
    """
    words = normalize_name(query).split()
    keys: list[str] = []
    seen: set[str] = set()
    for n in range(1, 5):
        for i in range(len(words) - n + 1):
            gram = words[i : i + n]
            if gram[0] in STOP_WORDS or gram[-1] in STOP_WORDS:
                continue
            phrase = " ".join(gram)
            variants = [phrase]
            last = gram[-1]
            if len(last) > 3 and last.endswith("s") and not last.endswith("ss"):
                variants.append(" ".join(gram[:-1] + [last[:-1]]))
            for v in variants:
                if len(v) >= 2 and v not in seen:
                    seen.add(v)
                    keys.append(v)
    return keys[:MAX_QUERY_KEYS]


def named_query_keys(query: str) -> set[str]:
    """The query keys (query_keys) that contain a word written as a name in the query: capitalized, or with
    inner capitals or digits ("Drew Fuller", "HD 23"), a stop word never. These name something; a key like
    "killed" or "type" only matches a frequent phrase of some passage."""
    named_words: set[str] = set()
    for token in NAME_TOKEN.findall(query):
        if token[0].isupper() or _has_inner_caps_or_digits(token):
            named_words.update(w for w in normalize_name(token).split() if w not in STOP_WORDS)
    return {k for k in query_keys(query) if named_words.intersection(k.split())}
