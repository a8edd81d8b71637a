"""The semantic cache's guard: two prompts may share an answer only when the values they name agree.

Embeddings put "what is the nationality of Terrence Ross?" next to "... of Kyle Lowry?" (same words, same
shape): the classic wrong hit of a semantic cache. The values that change an answer are what the guard
compares:

- numbers (``2008``, ``3.5``, ``1,000`` → ``1000``) must be the same set in both prompts;
- quoted strings (``'...'``, ``"..."``, ``“...”``) must each occur in the other prompt (case-insensitive);
- capitalised words — names — must each occur as a word of the other prompt, ignoring case, so a
  lower-case paraphrase ("terrence ross' nationality") still agrees while "Kyle Lowry" does not. The first
  word of a sentence is a name only when it is not a common opening word ("What", "How", "Name", ...).

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


def _covered(mine: Facts, other: Facts) -> bool:
    """Every quoted string and name of ``mine`` occurs in ``other``."""
    return all(q in other.text for q in mine.quoted) and mine.names <= other.words


def agree(a: str | Facts, b: str | Facts) -> bool:
    """Whether prompts ``a`` and ``b`` name the same values (see the module docstring)."""
    fa = a if isinstance(a, Facts) else facts(a)
    fb = b if isinstance(b, Facts) else facts(b)
    return fa.numbers == fb.numbers and _covered(fa, fb) and _covered(fb, fa)
