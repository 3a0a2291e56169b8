"""Technical names in a spaCy parse: what `en_core_web_sm`, trained on news, misreads in software documentation.

The small model types "ArcadeDB", "Bolt" and "Cypher" as PERSON and misses "Neo4j" and "Qdrant" half the time, so
a page about a database had no typed neighbourhood. A document that writes an identifier (`execute_read`,
`serve.batch`) or at least three words with inner capitals or digits ("ArcadeDB", "PyPI", "Neo4j") is read as
technical text:

- a name written like code ("ArcadeDB", "PyPI", "Neo4j", "MiniLM") is TECH, unless the recognizer called it an
  organisation, product, work or event ("YouTube" stays ORG);
- a one-word PERSON/GPE/LOC/NORP ("Bolt", "Gremlin") is TECH: the text names software, not people;
- a capitalised proper noun the recognizer missed, written mid-sentence ("Cypher", "Qdrant Edge"), and an
  all-capitals acronym ("SQL", "HNSW") are TECH entities.

Prose (HotpotQA, SciFact's abstracts without code-like names) is left to the recognizer as it is. Common words are
never entities: a TECH name is capitalised, an acronym or written like code.
"""

from __future__ import annotations

import re

from deployments.graph.extraction.ontology import CO_OCCURS
from deployments.models import Entity, Relation

TECH = "TECH"
# "McDonald", "DeMarco", "MacArthur", "O'Brien", "LaGuardia": inner capitals of a person's or place's name.
_NAME_PREFIX = re.compile(r"^(?:Mc|Mac|De|Di|Da|Du|La|Le|Van|Von|O['’])[A-Z][a-z]+$")
_CODE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$|^[a-z]{2,}(?:\.[a-z_]{2,})+$")  # execute_read, serve.batch
# Types the recognizer gets right on technical text too (an organisation, a product, a work, an event).
_KEEP = frozenset(("ORG", "PRODUCT", "WORK", "EVENT", "FAC", "LAW", "DATE"))
_PEOPLE_OR_PLACES = frozenset(("PERSON", "GPE", "LOC", "NORP", "OTHER"))
_URL = re.compile(r"^(?:https?:|www\.)|\.(?:com|org|net|gov|edu|io|uk|de|pdf|html?)$")  # a web address is no code
MIN_TECH_WORDS = 3  # distinct code-like words; 2 also caught band and game names in HotpotQA prose


def written_like_code(word: str) -> bool:
    """Inner capitals or digits after a letter ("ArcadeDB", "Neo4j", "PyPI", "iPhone"), not a name's prefix."""
    core = word.rstrip("s") if word.endswith("s") and len(word) > 3 else word
    if (
        len(core) < 3
        or sum(ch.isalpha() for ch in core) < 2
        or not core[0].isalpha()
        or _NAME_PREFIX.match(core)
        or acronym(core)
    ):
        return False
    if not core.isascii() or not core.isalnum():
        return False
    return any(ch.isupper() or ch.isdigit() for ch in core[1:]) and any(ch.islower() for ch in core)


def acronym(word: str) -> bool:
    """ "SQL", "HNSW", "GPUs": two to eight capitals (a trailing plural s allowed)."""
    core = word[:-1] if word.endswith("s") else word
    return 2 <= len(core) <= 8 and core.isalpha() and core.isupper()


def code_words(doc) -> set[str]:
    """The parse's words written like code ("ArcadeDB", "execute_read", "serve.batch")."""
    return {t.text for t in doc if not _URL.search(t.text) and (written_like_code(t.text) or _CODE.match(t.text))}


def technical_documents(docs, doc_ids: list[str]) -> set[str]:
    """The documents (of a batch of parsed chunks) that write an identifier (`execute_read`, `serve.batch`) or at
    least MIN_TECH_WORDS distinct code-like words: a page's later chunks are technical text too."""
    seen: dict[str, set[str]] = {}
    for doc, doc_id in zip(docs, doc_ids):
        seen.setdefault(doc_id, set()).update(w.lower() for w in code_words(doc))
    return {d for d, words in seen.items() if len(words) >= MIN_TECH_WORDS or any(_CODE.match(w) for w in words)}


def retype(type_: str, words: list[str]) -> str:
    """The type of a recognized name in technical text (see the module's rules)."""
    if len(words) == 1 and acronym(words[0]) and type_ != "DATE":
        return TECH  # "SQL", "HNSW", "TEI": the small model calls most acronyms an ORG
    if type_ in _KEEP:
        return type_
    if any(written_like_code(w) for w in words) or (len(words) == 1 and type_ in _PEOPLE_OR_PLACES):
        return TECH
    return type_


def missed_names(doc, taken: set[int], tech: bool = True) -> list[tuple[int, int]]:
    """Token bounds of technical names the recognizer missed: runs of capitalised proper nouns (not the first word
    of a sentence unless written like code), code-like words and acronyms, none of whose tokens is `taken`. In
    prose (`tech` false) only words written like code ("GraphRAG"): a proper noun there is the recognizer's call."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(doc)
    while i < n:
        tok = doc[i]
        if i in taken or not (_candidate(tok) if tech else written_like_code(tok.text)):
            i += 1
            continue
        if not tech:
            spans.append((i, i + 1))
            i += 1
            continue
        j = i + 1
        while j < n and j not in taken and _name_word(doc[j]) and _name_word(doc[j - 1]) and doc[j - 1].whitespace_:
            j += 1  # "Qdrant Edge"; a code-like word or an acronym is a name of its own
        if not (
            j - i == 1 and doc[i].is_sent_start and not written_like_code(doc[i].text) and not acronym(doc[i].text)
        ):
            spans.append((i, j))
        i = j
    return spans


def _candidate(tok) -> bool:
    return written_like_code(tok.text) or acronym(tok.text) or _name_word(tok)


def _name_word(tok) -> bool:
    text = tok.text
    return tok.pos_ == "PROPN" and text[:1].isupper() and text[1:].islower() and len(text) > 1


def tech_words(mentions) -> set[str]:
    """Keys of one-word TECH mentions: a longer name containing one ("Qdrant Edge") is TECH too."""
    return {m.key for m in mentions if m.type in (TECH, "PRODUCT") and " " not in m.key}


def compound_entity(tok, entity_at):
    """The entity a noun phrase is named after ("a Bolt protocol plugin" -> Bolt; "SQL, Cypher and Gremlin queries"
    -> SQL, Cypher, Gremlin): its compound modifiers that are entities, with their conjuncts."""
    found = []
    for child in tok.children:
        if child.dep_ == "compound":
            for c in (child, *child.conjuncts):
                key = entity_at(c) or (compound_entity(c, entity_at) or [None])[0]
                if key and key not in found:
                    found.append(key)
    return found


def beside_lead(entities: dict[str, Entity], relations: list[Relation], room: int) -> list[Relation]:
    """CO_OCCURS from the chunk's first lead (what the page is about: "Neo4j" of "Neo4j and the Bolt protocol") to
    each entity no typed relation ties, other leads included: the page's names stay reachable from its subject where
    the parse found nothing. Undirected, source < target."""
    leads = [k for k, e in entities.items() if e.lead and e.type != "DATE"]
    if not leads or room <= 0:
        return []
    tied = {k for r in relations for k in (r.source, r.target)}
    hub = leads[0]
    out = [
        Relation(source=min(hub, k), target=max(hub, k), type=CO_OCCURS, weight=1.0)
        for k, e in entities.items()
        if k != hub and k not in tied and e.type != "DATE"
    ]
    return out[:room]
