"""Query-term highlighting that is safe to render as HTML.

The passage text comes from the corpus, not from us, so every piece is escaped; only the
<mark> tags this module adds are markup.
"""

from __future__ import annotations

import html
import re

_WORD = re.compile(r"\w+", re.UNICODE)
MIN_TERM_CHARS = 2  # single letters ("a", "i") would light up the whole passage
# Function words carry no meaning a reader looks for; marking them would light up every line.
STOPWORDS = frozenset(
    """about above after again all also am an and any are as at be been before being below
    between both but by can could did do does doing down during each few for from further had
    has have having he her here hers him his how if in into is it its itself just me more most
    my no nor not now of off on once only or other our ours out over own same she should so
    some such than that the their theirs them then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would
    you your yours""".split()
)


def query_terms(query: str) -> list[str]:
    """Distinct content words of the query, longest first so "runner" wins over "run"."""
    terms = {
        word.lower()
        for word in _WORD.findall(query)
        if len(word) >= MIN_TERM_CHARS and word.lower() not in STOPWORDS
    }
    return sorted(terms, key=lambda term: (-len(term), term))


def highlight(text: str, query: str) -> str:
    """`text` as escaped HTML with whole-word matches of the query's terms wrapped in <mark>."""
    terms = query_terms(query)
    if not terms:
        return html.escape(text)
    pattern = re.compile(r"\b(" + "|".join(re.escape(term) for term in terms) + r")\b", re.I)
    pieces = pattern.split(text)  # odd positions are the matches
    return "".join(
        f"<mark>{html.escape(piece)}</mark>" if i % 2 else html.escape(piece)
        for i, piece in enumerate(pieces)
    )


def snippet(text: str, max_chars: int) -> str:
    """The first `max_chars` characters, cut at a word boundary, with an ellipsis if cut."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0]
    return cut + " …"
