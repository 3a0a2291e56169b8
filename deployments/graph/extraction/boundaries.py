"""Where a name ends, and which words of a parse may tie two names: the spaCy extractor's guards for relation
precision (issue 23). A relation is only as right as its two ends; most wrong relations in the labelled samples
(benchmarks/results/kg-labels/) had an end that was part of a longer name ("Idaho" of "Add The Words, Idaho",
"Russell Terrier Club" of "American Russell Terrier Club", "Anheuser" of "Anheuser–Busch InBev") or words tied
across a clause ("... the lead role of Bruce Wayne, with a returning cast: Michael Caine as Alfred").

- The chunk's heading written again in its body ("Pookey Bleum was a band") is the heading's entity there, whatever
  pieces the recognizer made of it ("Bleum").
- A name that is cut is no end of a relation: a capitalised word or a number joined to it in the parse right
  before or after it ("Deputy Leader of ...", "BBC Radio 4", "John F. Kennedy"), or a dash glued to it
  ("Anheuser–Busch"), a number written right after it ("Hawaii Route 750"), a parenthesised acronym and more name
  ("... for Women (AIAW) National Championships"), half a quotation ('The Eagle" Edwards'), a generation after a
  comma ("Hank Williams, Jr."), escaped markup ("Forbes &amp"). A number before a name is a cut too: "the 2009 FIFA
  U-20 World Cup" was hosted by Egypt, the tournament as such was not. Before a person's name a title is no cut
  ("President Barack Obama"; TITLES), nor a word that starts the sentence ("Businessman Ross Perot ran ..."). The
  chunk's heading's own name is never cut: it is the heading.
- The words that tie two names are outside both: no preposition inside a name ("existed from 1957 to 1961" is no
  EXIST_TO "1957 to 1961").
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
# Words before a person's name that are a title, not part of the name ("President Barack Obama", "Sir Elton John").
TITLES = frozenset(
    "president vice king queen prince princess emperor empress sultan pope saint st sir dame lord lady baron baroness "
    "duke duchess earl count countess mr mrs ms miss dr doctor professor prof rev reverend father brother sister "
    "general gen colonel col major captain capt lieutenant lt sergeant sgt admiral commander marshal private corporal "
    "senator sen governor gov mayor judge justice chancellor minister premier chairman chairwoman director coach "
    "commissioner ambassador bishop archbishop cardinal rabbi imam sheikh chief deputy representative rep secretary "
    "speaker congressman congresswoman councillor councilman officer agent detective inspector".split()
)
_SUFFIX = frozenset(("jr", "jr.", "sr", "sr.", "ii", "iii", "iv"))  # "Hank Williams, Jr.": the name goes on
_MARKUP = re.compile(r"&(?:amp|quot|lt|gt|apos|nbsp)\b")  # "Forbes &amp" of "Harris, Forbes &amp; Co."


def relation_ends(
    doc, mentions: list, alias_of: dict[str, str], entities: dict, heading: tuple[int, int] | None
) -> dict[int, str]:
    """Token -> the entity key a relation may start or end at: every token of a name (the parse may hang a relation
    on any), but not a name cut from a longer one; the heading written again in the body is the heading's entity
    (the module's rules)."""
    body_start = heading[1] if heading else 0
    title = next((m for m in mentions if heading and m.sentence == -1 and m.end == body_start), None)
    title_key: str = alias_of.get(title.key, title.key) if title else ""
    root_of: dict[int, str] = {}
    for m in mentions:
        key = alias_of.get(m.key, m.key)
        if key in entities and (key == title_key or not cut(doc, m.start, m.end, m.type == "PERSON")):
            for i in range(m.start, m.end):  # the heading's own name is the heading, whatever stands around it
                root_of[i] = key
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


def _continues(tok) -> bool:
    """A name goes on in `tok`, right after a parenthesis (no full stop between): a capitalised word, not a function
    word (the parser may start a sentence there: "(AIAW) | National Championships")."""
    return tok.text[:1].isupper() and not tok.is_stop and tok.is_alpha


def _joined(a, b) -> bool:
    return (a.head.i == b.i and a.dep_ in _JOINS) or (b.head.i == a.i and b.dep_ in _JOINS)


def cut(doc, start: int, end: int, person: bool) -> bool:
    """doc[start:end] is part of a longer name (see the module's rules)."""
    first, last = doc[start], doc[end - 1]
    span_text = doc[start:end].text
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
        if after.text.isdigit() and after.ent_type_ != "DATE" and last.whitespace_ and last.text[:1].isupper():
            return True  # "Hawaii Route 750" (the parse hangs the number elsewhere)
        if after.text == "(" and end + 3 < len(doc) and doc[end + 2].text == ")" and _continues(doc[end + 3]):
            return True  # "Association for Intercollegiate Athletics for Women (AIAW) National Championships"
    if span_text.count('"') % 2:
        return True  # 'The Eagle" Edwards' of 'Eddie "The Eagle" Edwards'
    if start > 0:
        before = doc[start - 1]
        if before.text in _GLUE and not before.whitespace_ and start > 1 and not doc[start - 2].whitespace_:
            return True  # "Busch InBev" of "Anheuser–Busch InBev"
        # "President Obama", "Businessman Ross Perot": a title, or a common word capitalised as a sentence's first
        titled = person and (before.lower_.rstrip(".") in TITLES or (before.is_sent_start and not before.ent_type_))
        if not titled and _name_word(before) and any(_joined(t, before) for t in doc[start:end]):
            return True  # "Deputy Leader of Government Business", "American Russell Terrier Club", "2009 FIFA ..."
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
