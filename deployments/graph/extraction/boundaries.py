"""Where a name ends, and which words of a parse may tie two names: the spaCy extractor's guards for relation
precision (issue 23). A relation is only as right as its two ends; most wrong relations in the labelled samples
(benchmarks/results/kg-labels/) had an end that was part of a longer name ("Idaho" of "Add The Words, Idaho",
"Russell Terrier Club" of "American Russell Terrier Club", "Anheuser" of "Anheuser–Busch InBev") or words tied
across a clause ("... the lead role of Bruce Wayne, with a returning cast: Michael Caine as Alfred").

- The chunk's heading written again in its body ("Pookey Bleum was a band") is the heading's entity there, whatever
  pieces the recognizer made of it ("Bleum").
- A name that is cut is no end of a relation: a capitalised word or a number joined to it in the parse right
  before or after it ("Deputy Leader of ...", "BBC Radio 4", "John F. Kennedy"), or a dash glued to it
  ("Anheuser–Busch"), a generation after a comma ("Hank Williams, Jr."), or escaped markup ("Forbes &amp"). Before a person's name such a word is a title ("President
  Obama") unless it is a name itself, and a number before a name is an edition or a year ("the 1986 Aloha Bowl"):
  neither is a cut.
- A noun's preposition or participle after a comma ("his grandmother, Haer, daughter of Cynfyn"; "the series
  "Army Wives", portrayed by ...") and an apposition across a colon or semicolon are the parser's guesses: left out.
"""

from __future__ import annotations

import re

# Punctuation that ends the phrase a noun heads: what follows it hangs on the noun only by the parser's guess.
BREAKS = frozenset((",", ";", ":", "—", "–", "(", ")"))
CLAUSE_BREAKS = frozenset((";", ":", "—", "–"))
_GLUE = frozenset(("-", "–", "—", "&", "/"))
_JOINS = frozenset(("compound", "nummod", "amod", "nmod", "flat"))
RELATIVE = frozenset(("who", "which", "that", "whom"))
_SUFFIX = frozenset(("jr", "jr.", "sr", "sr.", "ii", "iii", "iv"))  # "Hank Williams, Jr.": the name goes on
_MARKUP = re.compile(r"&(?:amp|quot|lt|gt|apos|nbsp)\b")  # "Forbes &amp" of "Harris, Forbes &amp; Co."


def relation_ends(
    doc, mentions: list, alias_of: dict[str, str], entities: dict, heading: tuple[int, int] | None
) -> dict[int, str]:
    """Token -> the entity key a relation may start or end at: every token of a name (the parse may hang a relation
    on any), but not a name cut from a longer one; the heading written again in the body is the heading's entity
    (the module's rules)."""
    body_start = heading[1] if heading else 0
    root_of: dict[int, str] = {}
    for m in mentions:
        key = alias_of.get(m.key, m.key)
        if key in entities and not cut(doc, m.start, m.end, m.type == "PERSON"):
            for i in range(m.start, m.end):
                root_of[i] = key
    title = next((m for m in mentions if heading and m.sentence == -1 and m.end == body_start), None)
    title_key: str = alias_of.get(title.key, title.key) if title else ""
    if title and title_key in entities:
        named = [(m.start, m.end) for m in mentions]
        for start, end in title_spans(doc, title.start, title.end, body_start, named):
            for i in range(start, end):
                root_of[i] = title_key
    return root_of


def title_spans(doc, start: int, end: int, body_start: int, named: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token bounds of the heading (doc[start:end], its disambiguator left out) written again, in any case, after
    `body_start`; an occurrence inside a longer recognized name (`named`: token bounds) is that name's, not the
    heading's ("Idaho State University" under a heading "Idaho")."""
    words = [t.lower_ for t in doc[start:end] if not t.is_space]
    if "(" in words and words[-1] == ")":  # "Tarzan, the Ape Man (1981 film)"
        words = words[: words.index("(")]
    n = len(words)
    if not n:
        return []
    found = []
    i = body_start
    while i + n <= len(doc):
        if doc[i].lower_ == words[0] and [t.lower_ for t in doc[i : i + n]] == words:
            inside = all(s >= i and e <= i + n for s, e in named if s < i + n and e > i)
            if inside:
                found.append((i, i + n))
                i += n
                continue
        i += 1
    return found


def _name_word(tok) -> bool:
    return tok.text[:1].isupper() or tok.text[:1].isdigit()


def _joined(a, b) -> bool:
    return (a.head.i == b.i and a.dep_ in _JOINS) or (b.head.i == a.i and b.dep_ in _JOINS)


def cut(doc, start: int, end: int, person: bool) -> bool:
    """doc[start:end] is part of a longer name (see the module's rules)."""
    first, last = doc[start], doc[end - 1]
    if _MARKUP.search(doc.text[max(first.idx - 6, 0) : last.idx + len(last.text) + 6]):
        return True  # a name torn by escaped markup
    if all(t.lower_ in _SUFFIX or t.is_punct for t in doc[start:end]):
        return True  # "Jr." alone
    if end + 1 < len(doc) and doc[end].text == "," and doc[end + 1].lower_ in _SUFFIX:
        return True  # "Hank Williams" of "Hank Williams, Jr."
    if end < len(doc):
        after = doc[end]
        if after.text in _GLUE and not doc[end - 1].whitespace_ and not after.whitespace_:
            return True  # "Anheuser–Busch InBev"
        if _name_word(after) and any(_joined(t, after) for t in doc[start:end]):
            return True  # "BBC Radio 4", "John F. Kennedy"
    if start > 0:
        before = doc[start - 1]
        if before.text in _GLUE and not before.whitespace_ and start > 1 and not doc[start - 2].whitespace_:
            return True  # "Busch InBev" of "Anheuser–Busch InBev"
        # "President Obama": a title, compounded, of no name of its own ("American Jack Russell ..." is no title)
        titled = person and before.dep_ == "compound" and not before.ent_type_
        if not titled and before.text[:1].isupper() and any(_joined(t, before) for t in doc[start:end]):
            return True  # "Deputy Leader of Government Business", "American Russell Terrier Club"
    return False


def broken(doc, a: int, b: int, marks=BREAKS, skip=frozenset()) -> bool:
    """A mark of `marks` between tokens a and b (either order), tokens in `skip` aside."""
    lo, hi = min(a, b), max(a, b)
    return any(doc[i].text in marks for i in range(lo + 1, hi) if i not in skip)


def relative_subject(verb, person_head: bool) -> bool:
    """A relative clause's verb says something of the noun it hangs on: its subject is a relative pronoun ("Giuliani,
    who was born in ...") or missing ("the film directed ..."); "where they lost to ..." has a subject of its own,
    and "which" is no person ("Dell Magazines, founded by George T. Delacorte, Jr., which had been acquired")."""
    subjects = [c for c in verb.children if c.dep_ in ("nsubj", "nsubjpass")]
    if any(c.lower_ not in RELATIVE for c in subjects):
        return False
    return not (person_head and any(c.lower_ == "which" for c in subjects))
