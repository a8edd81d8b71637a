"""The semantic cache's guard: two prompts may share an answer only when the values they name agree.

Embeddings put "what is the nationality of Terrence Ross?" next to "... of Kyle Lowry?" (same words, same
shape): the classic wrong hit of a semantic cache. The values that change an answer are what the guard
compares:

- numbers (``2008``, ``3.5``, ``1,000`` → ``1000``) must be the same set in both prompts;
- quoted strings (``'...'``, ``"..."``, ``“...”``) must each occur in the other prompt (case-insensitive);
- capitalised words — names — are compared with the other prompt's words, ignoring case, so a lower-case
  paraphrase ("terrence ross' nationality") still agrees. A name missing from the other prompt is a
  conflict when the other prompt has a word of its own instead ("Ross" → "Lowry", "Lowry" → "ross"): a
  replaced value. A name next to words both prompts share is extra context, not another value (a longer
  `columns:` header: wikisql-mini's two sources write one table's header differently, and requiring every
  name on both sides turned down half the correct hits at the same wrong-hit rate). The first word of a
  sentence is a name only when it is not a common opening word ("What", "How", "Name", ...).

Possessives (``Ross's``, ``Ross'``) count as the name. ``bench/semantic_cache.py`` measures what the guard
buys: wrong hits with and without it on paraphrased WikiSQL traffic.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
# a possessive's apostrophe (Ross's, Ross') opens no quote: a quote is not preceded by a letter
QUOTED = re.compile(r"(?<!\w)'([^']+?)'(?!\w)|\"([^\"]+)\"|“([^”]+)”|‘([^’]+)’")
WORD = re.compile(r"[^\W\d_][\w'’\-]*")
SENTENCE_START = re.compile(r"(?:^|[.!?:;\n]\s*)$")
# Words that open a question or a command; capitalised only because they come first.
# fmt: off
OPENERS = frozenset([
    "a", "an", "the", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "name",
    "list", "tell", "give", "show", "find", "is", "are", "was", "were", "do", "does", "did", "can",
    "could", "will", "would", "should", "shall", "may", "might", "has", "have", "had", "in", "on", "at",
    "of", "for", "from", "by", "with", "to", "and", "or", "if", "please", "count", "there", "this", "that",
    "these", "those", "it", "its", "i", "you", "we", "they", "he", "she", "my", "your", "our",
])
# fmt: on


@dataclass(frozen=True, slots=True)
class Facts:
    """The values of one prompt that decide its answer."""

    numbers: frozenset[str]
    quoted: frozenset[str]
    names: frozenset[str]  # lower-cased
    words: frozenset[str]  # every word of the prompt, lower-cased, possessives stripped
    text: str  # the prompt, lower-cased (quoted strings are looked up in it)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _word(raw: str) -> str:
    """A word, lower-cased, without a possessive ending (``Ross's``, ``Ross'`` → ``ross``)."""
    word = _fold(raw).replace("’", "'").rstrip("'")
    return word[:-2] if word.endswith("'s") else word


def _number(raw: str) -> str:
    """``1,000`` → ``1000``, ``3.50`` → ``3.5``."""
    value = raw.replace(",", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value


def facts(text: str) -> Facts:
    """The numbers, quoted strings and names of ``text``."""
    quoted = frozenset(_fold(next(g for g in m.groups() if g)).strip() for m in QUOTED.finditer(text))
    numbers = frozenset(_number(m.group()) for m in NUMBER.finditer(text))
    names: set[str] = set()
    words: set[str] = set()
    for match in WORD.finditer(text):
        word = _word(match.group())
        words.add(word)
        if not match.group()[:1].isupper():
            continue
        first = SENTENCE_START.search(text, 0, match.start()) is not None
        if not (first and word in OPENERS):
            names.add(word)
    return Facts(numbers, quoted, frozenset(names), frozenset(words), _fold(text))


def _replaced(mine: Facts, other: Facts) -> bool:
    """A name of ``mine`` is missing from ``other`` while ``other`` has a word ``mine`` lacks: a value was
    replaced ("Ross" → "Lowry"). A name only one prompt has, next to words both share, is extra context
    (a longer header), not another value."""
    if mine.names <= other.words:
        return False
    return bool(other.words - mine.words - OPENERS)


def agree(a: str | Facts, b: str | Facts) -> bool:
    """Whether prompts ``a`` and ``b`` name the same values (see the module docstring)."""
    fa = a if isinstance(a, Facts) else facts(a)
    fb = b if isinstance(b, Facts) else facts(b)
    if fa.numbers != fb.numbers:
        return False
    if not all(q in fb.text for q in fa.quoted) or not all(q in fa.text for q in fb.quoted):
        return False
    return not _replaced(fa, fb) and not _replaced(fb, fa)
