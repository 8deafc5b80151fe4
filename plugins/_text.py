"""Text handling the search plugins share: Markdown headings and sections, tokens and stems.

Every plugin that turns text into terms goes through :func:`terms`, so the index, the query cache
and the statistics agree on what a term is: a lowercased word of at least two characters that is
not a stop word, reduced by a light suffix-stripping stemmer ("scheduling", "schedules" and
"scheduled" all become "schedul").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "STOPWORDS",
    "Section",
    "anchors",
    "sections",
    "slug",
    "stem",
    "terms",
    "title",
    "words",
]

# Words too common to tell documents apart; they are neither indexed nor searched.
_STOPWORD_TEXT = """
a about above after again all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers him his how if in into is it its itself just me more most my no nor not now
of off on once only or other our ours out over own same she should so some such than that the their
them then there these they this those through to too under until up very was we were what when
where which while who whom why will with would you your
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_VOWELS = frozenset("aeiouy")
_NOT_SLUG = re.compile(r"[^\w\- ]")

# (suffix, replacement), tried in order after the inflections; the first that leaves a stem of at
# least three letters wins.
_DERIVATIONS: tuple[tuple[str, str], ...] = (
    ("ization", "iz"),
    ("ational", "at"),
    ("fulness", "ful"),
    ("iveness", "iv"),
    ("ousness", "ous"),
    ("ation", "at"),
    ("ement", ""),
    ("ness", ""),
    ("ment", ""),
    ("ity", ""),
)


@dataclass(frozen=True)
class Section:
    """A part of a Markdown document under one heading (level 0: text before the first one)."""

    heading: str
    level: int
    body: str


def words(text: str) -> list[str]:
    """The lowercased words of ``text`` that carry meaning: two letters or more, no stop words."""
    return [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS]


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """Reduce a lowercased word to its stem by stripping inflections, then one derivation."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("ies"):
        word = word[:-3] + "i"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ingly", "edly", "ing", "ed", "ly"):
        base = word[: -len(suffix)]
        if word.endswith(suffix) and len(base) >= 3 and _VOWELS.intersection(base):
            word = base[:-1] if len(base) > 3 and base[-1] == base[-2] not in "lsz" else base
            break
    for suffix, replacement in _DERIVATIONS:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + replacement
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The index terms of ``text``, in order: its meaningful words, stemmed."""
    return [stem(w) for w in words(text)]


def sections(text: str) -> list[Section]:
    """Split Markdown into sections at ATX headings; headings inside code fences do not count."""
    found: list[Section] = []
    heading, level, body = "", 0, []
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        if heading or "".join(body).strip():
            found.append(Section(heading, level, "\n".join(body).strip()))
        heading, level, body = match.group(2), len(match.group(1)), []
    if heading or "".join(body).strip():
        found.append(Section(heading, level, "\n".join(body).strip()))
    return found


def title(text: str, fallback: str) -> str:
    """The title: the first level-1 heading, else the first heading, else ``fallback``."""
    headings = [s for s in sections(text) if s.level > 0]
    for section in headings:
        if section.level == 1:
            return section.heading
    return headings[0].heading if headings else fallback


def slug(heading: str) -> str:
    """A heading's link anchor as GitHub makes it: lowercase, punctuation dropped, spaces to '-'."""
    return _NOT_SLUG.sub("", heading.strip().lower()).replace(" ", "-")


def anchors(found: Sequence[Section]) -> list[str]:
    """The anchor of each section ('' before the first heading); repeats get ``-1``, ``-2``..."""
    seen: dict[str, int] = {}
    result = []
    for section in found:
        anchor = slug(section.heading) if section.level else ""
        if anchor in seen:
            seen[anchor] += 1
            anchor = f"{anchor}-{seen[anchor]}"
        else:
            seen[anchor] = 0
        result.append(anchor)
    return result
