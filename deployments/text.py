"""Text handling shared by every stage: stop words, word tokens, sentences, and the linking key of a name.

One definition of each, so extraction, query linking and the extractive answer agree on what a word, a
sentence and a name are.
"""

from __future__ import annotations

import re
import unicodedata

# Words that carry no topic: dropped from query terms, entity names and linking keys.
STOP_WORDS = frozenset(
    """
    a about above across after again against all almost also although always am among an and another any anyone
    anything are around as at be became because become been before being below between both but by can cannot
    could did do does doing done down during each either else enough etc even ever every few for from further
    get gets given go had has have having he her here hers herself him himself his how however i if in into is
    it its itself just least less like made make many may me might more most much must my myself near neither
    never new no nor not now of off often on once one only onto or other others otherwise our ours ourselves out
    over own per perhaps please quite rather really same see seem seen several shall she should show since so
    some something still such than that the their theirs them themselves then there therefore these they this
    those though through thus to too toward towards two under until up upon us use used uses using very via was
    we well were what whatever when where whether which while who whom whose why will with within without would
    yes yet you your yours yourself yourselves
    tell explain describe list give find know let says said say according called
    """.split()
)

_TERM = re.compile(r"\w+", re.UNICODE)
# A name's token keeps its inner apostrophes, dots and hyphens: "O'Brien", "U.S.A.", "Jean-Luc".
NAME_TOKEN = re.compile(r"\w+(?:['’.\-]\w+)*")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_DROP_INSIDE = re.compile(r"[.'’`]")  # "U.S.A." -> "usa", "O'Brien" -> "obrien"


def terms(text: str) -> list[str]:
    """Lower-cased content words, lightly stemmed (plural -s/-ies) so "companies" meets "company"."""
    out = []
    for word in _TERM.findall(text.lower()):
        if len(word) < 2 or word in STOP_WORDS:
            continue
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
        out.append(word)
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences (after . ! ? and white space) and lines; blank pieces dropped, the rest as they are."""
    return [s for s in _SENTENCE_SPLIT.split(text) if s.strip()]


def normalize_name(text: str) -> str:
    """The linking key of a name: NFKC, case-folded, punctuation removed, white space collapsed.

    Shared by extraction and query linking, so both sides of a lookup agree.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _DROP_INSIDE.sub("", text)
    # Every other punctuation or symbol separates words ("graph-rag" -> "graph rag").
    text = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in text)
    return " ".join(text.split())
