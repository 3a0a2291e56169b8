"""Static check of user Cypher for POST /v1/graph/query: read-only statements only.

The first of the barriers (user_query.py): a statement it lets through still runs as the store's read-only
user, in a READ session, so a write it misses is refused by the engine. It scans the text the way Cypher's
lexer does (strings, `quoted` names, comments), then refuses, outside strings and quoted names: any write or
admin keyword whatever its case, CALL of anything but a few read-only schema procedures, namespaced functions
other than the built-in temporal/spatial ones, a second statement, and any character but printable ASCII,
space, tab, CR and LF (so no look-alike letters, no zero-width characters splitting a keyword); and `file:`
URLs anywhere. It is an allow-list where it can be: the statement must start with a read clause.

A `//` comment ends at the first character any lexer may take for a line end (CR, LF, U+2028, U+2029, U+0085,
form feed, vertical tab), never later than the engine's: the text after it is checked as code, so a comment
cannot hide what the engine runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_QUERY_CHARS = 20_000

# Clauses and commands that write, load outside data, manage the server, or commit inside a statement;
# the SQL words cover a server that might hand the text to another query language.
WRITE_KEYWORDS = frozenset(
    """
    CREATE MERGE DELETE DETACH SET REMOVE DROP LOAD CSV FOREACH INSERT USE TRANSACTIONS PERIODIC COMMIT
    ALTER GRANT REVOKE DENY RENAME START STOP TERMINATE ENABLE SHOW
    UPDATE UPSERT TRUNCATE IMPORT EXPORT BACKUP RESTORE MOVE REBUILD ALIGN BEGIN ROLLBACK CHECK
    """.split()
)
READ_STARTS = frozenset({"MATCH", "OPTIONAL", "WITH", "UNWIND", "RETURN", "CALL", "EXPLAIN", "PROFILE"})
READ_PROCEDURES = frozenset(
    {
        "db.labels", "db.relationshiptypes", "db.propertykeys", "db.schema.visualization",
        "db.schema.nodetypeproperties", "db.schema.reltypeproperties",
    }
)  # fmt: skip
BUILTIN_NAMESPACES = frozenset({"date", "datetime", "localdatetime", "localtime", "time", "duration", "point"})


class UnsafeQuery(ValueError):
    """The statement is refused; the message says why (HTTP 400)."""


@dataclass
class Token:
    kind: str  # "word", "param", "quoted" (a `name`), "string", "symbol"
    text: str


# Where a `//` comment may end: ArcadeDB's and Neo4j's lexers end it at CR or LF; the others are line ends
# elsewhere (Java, Unicode), ended here too so that no lexer can see code the guard took for a comment.
LINE_TERMINATORS = frozenset("\n\r\u2028\u2029\u0085\x0c\x0b")
WHITESPACE = frozenset(" \t\r\n")
_COMMENT_END = re.compile("[" + "".join(sorted(LINE_TERMINATORS)) + "]")
_FILE_URL = re.compile(r"\s*file\s*:", re.IGNORECASE)

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9][0-9A-Za-z_.]*")


def tokens(query: str) -> list[Token]:
    """Lexes Cypher into words, parameters, quoted names, strings and symbols; comments are dropped."""
    out: list[Token] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch in WHITESPACE:
            i += 1
        elif query.startswith("//", i):
            terminator = _COMMENT_END.search(query, i + 2)
            # the terminator itself is lexed as code (only CR/LF pass)
            i = n if terminator is None else terminator.start()
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            if end < 0:
                raise UnsafeQuery("unterminated /* comment")
            i = end + 2
        elif ch in "'\"":
            j = i + 1
            while j < n and query[j] != ch:
                j += 2 if query[j] == "\\" else 1
            if j >= n:
                raise UnsafeQuery("unterminated string literal")
            if _FILE_URL.match(query, i + 1):
                raise UnsafeQuery("file: URLs are not allowed")
            out.append(Token("string", query[i + 1 : j]))
            i = j + 1
        elif ch == "`":
            j, name = i + 1, []
            while True:
                end = query.find("`", j)
                if end < 0:
                    raise UnsafeQuery("unterminated `quoted` name")
                name.append(query[j:end])
                if query.startswith("``", end):  # a doubled backtick is a literal backtick
                    name.append("`")
                    j = end + 2
                    continue
                i = end + 1
                break
            out.append(Token("quoted", "".join(name)))
        elif ch == "$":
            m = _WORD.match(query, i + 1) or _NUMBER.match(query, i + 1)
            if m is None:
                raise UnsafeQuery("a $ must name a parameter")
            out.append(Token("param", m.group()))
            i = m.end()
        elif word := _WORD.match(query, i):
            out.append(Token("word", word.group()))
            i = word.end()
        elif number := _NUMBER.match(query, i):
            i = number.end()
        elif " " < ch < "\x7f":
            out.append(Token("symbol", ch))
            i += 1
        else:
            raise UnsafeQuery(
                f"character {ch!r} (U+{ord(ch):04X}) at offset {i} is not allowed outside strings and `quoted` names"
            )
    return out


def _dotted_name(toks: list[Token], start: int) -> tuple[str, int]:
    """A dotted name (`db.schema.visualization`) starting at toks[start]; returns it and the index after it."""
    parts = [toks[start].text]
    i = start + 1
    while i + 1 < len(toks) and toks[i].text == "." and toks[i + 1].kind in ("word", "quoted"):
        parts.append(toks[i + 1].text)
        i += 2
    return ".".join(parts), i


def check_read_only(query: str) -> None:
    """Raises UnsafeQuery unless `query` is a single read-only Cypher statement."""
    if not query.strip():
        raise UnsafeQuery("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise UnsafeQuery(f"the query is longer than {MAX_QUERY_CHARS} characters")
    toks = tokens(query)
    if not toks:
        raise UnsafeQuery("the query holds only comments")
    for k, tok in enumerate(toks):
        if tok.kind == "symbol" and tok.text == ";" and k != len(toks) - 1:
            raise UnsafeQuery("only one statement per request (';' separates statements)")
    first = toks[0]
    if first.kind != "word" or first.text.upper() not in READ_STARTS:
        raise UnsafeQuery(f"a query must start with one of {', '.join(sorted(READ_STARTS))}, not {first.text!r}")
    for k, tok in enumerate(toks):
        nxt = toks[k + 1] if k + 1 < len(toks) else None
        if tok.kind == "quoted" and nxt is not None and nxt.text == "(":
            raise UnsafeQuery(f"calling `{tok.text}` is not allowed; only built-in functions")
        if tok.kind not in ("word", "quoted"):
            continue
        word = tok.text.upper()
        prev = toks[k - 1] if k else None
        after_dot = prev is not None and prev.kind == "symbol" and prev.text == "."  # a property or function name
        if tok.kind == "word" and word in WRITE_KEYWORDS and not after_dot:
            raise UnsafeQuery(f"{word} is not allowed: this endpoint runs read-only queries")
        if tok.kind == "word" and word == "CALL":
            if nxt is None:
                raise UnsafeQuery("CALL needs a subquery or a procedure")
            if nxt.kind == "symbol" and nxt.text in "{(":
                continue  # a subquery: its clauses are checked like the rest
            name, _ = _dotted_name(toks, k + 1)
            if name.lower() not in READ_PROCEDURES:
                raise UnsafeQuery(
                    f"CALL {name} is not allowed; allowed procedures: {', '.join(sorted(READ_PROCEDURES))}"
                )
        elif (
            nxt is not None
            and nxt.text == "."
            and not after_dot
            and not (prev is not None and prev.kind == "word" and prev.text.upper() == "CALL")
        ):
            # namespace.function(...): only the built-in temporal and spatial functions (procedures: above).
            name, after = _dotted_name(toks, k)
            if after < len(toks) and toks[after].text == "(":
                if name.split(".")[0].lower() not in BUILTIN_NAMESPACES:
                    raise UnsafeQuery(f"function {name}() is not allowed; only built-in functions")
