"""The semantic cache's guard: paraphrases agree, prompts naming other values do not."""

from __future__ import annotations

import pytest

from miniml.serve.semantic_guard import agree, facts

AGREE = [
    ("What is the nationality of Terrence Ross?", "terrence ross's nationality is what?"),
    ("What is the nationality of Terrence Ross?", "Which nationality does Terrence Ross have?"),
    ("Name the team with 1,000 points", "name the team having 1000 points"),
    ("How many games did Ross play in 1998?", "In 1998, how many games did Ross play?"),
    ('Who wrote "Hard Rain"?', "who was the writer of hard rain"),
    ("what is the average of 3.50", "what is the mean of 3.5"),
    ("how many rows are there", "count the rows"),
    (  # a longer header is extra context, not another value
        "table: t\ncolumns: Player, Team\nQ: Who is Ross?",
        "table: t\ncolumns: Player, Team, Years in Toronto\nQ: who is ross?",
    ),
]
DISAGREE = [
    ("What is the nationality of Terrence Ross?", "What is the nationality of Kyle Lowry?"),
    ("What was the score in 2008?", "what was the score in 2009"),
    ("How many games did Ross play in 1998?", "How many games did Ross play?"),
    ('Who wrote "Hard Rain"?', 'who wrote "Soft Rain"'),
    ("Which team did Lowry play for?", "which team did ross play for"),
    ("table: t\ncolumns: Player, Team\nQ: Who is Ross?", "table: t\ncolumns: Player, Team\nQ: who is lowry?"),
]


@pytest.mark.parametrize(("a", "b"), AGREE)
def test_paraphrases_agree(a: str, b: str) -> None:
    assert agree(a, b) and agree(b, a)


@pytest.mark.parametrize(("a", "b"), DISAGREE)
def test_other_values_disagree(a: str, b: str) -> None:
    assert not agree(a, b) and not agree(b, a)


def test_facts_are_the_values() -> None:
    found = facts("What did Terrence Ross's team score on 'Game Day' in 2,008.0?")
    assert found.names == {"terrence", "ross", "game", "day"}
    assert found.numbers == {"2008"}
    assert found.quoted == {"game day"}
    assert facts("what did src3 score").numbers == frozenset()  # digits inside a word are not a value
