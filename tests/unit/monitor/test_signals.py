from __future__ import annotations

from miniml.monitor.signals import Vocabulary, script_of, text_signals, words


def test_words_are_lowercased_word_runs() -> None:
    assert words("Hej, HVORDAN går det?") == ["hej", "hvordan", "går", "det"]


def test_scripts_of_letters_only() -> None:
    assert [script_of(c) for c in "aЖλ字3 ."] == ["Latin", "Cyrillic", "Greek", "Han", None, None, None]


def test_vocabulary_counts_unknown_words_and_round_trips() -> None:
    vocab = Vocabulary.of(["the cat sat", "a dog"])
    assert vocab.unknown(["cat", "dog", "zebra", "sat"]) == 1
    again = Vocabulary.loads(vocab.dumps())
    assert again.unknown(["cat", "zebra"]) == 1


def test_text_signals_measure_normalised_texts() -> None:
    vocab = Vocabulary.of(["hej med dig"])
    s = text_signals(["  Hej med dig ", "Привет мир"], vocab)
    assert s.chars.tolist() == [11, 10]
    assert s.tokens.tolist() == [3, 2]
    assert s.unknown.tolist() == [0, 2]
    assert s.oov_rate == 2 / 5
    assert s.scripts == {"Latin": 9, "Cyrillic": 9}
