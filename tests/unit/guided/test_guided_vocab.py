"""Token bytes: byte-level tokenizers spell text exactly; WordPiece gets its spaced, lower-cased form."""

from __future__ import annotations

from guided_support import byte_level, wordpiece
from miniml.guided.vocab import SPECIAL_MARKER


def test_byte_level_tokens_spell_the_text_exactly() -> None:
    tok, compiler = byte_level()
    vocab = compiler.vocab
    assert (vocab.kind, vocab.exact, vocab.lowercase) == ("byte_level", True, False)
    text = 'digits: {"one": 2}, é'
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert b"".join(vocab.tokens[i] for i in ids).decode() == text


def test_wordpiece_tokens_carry_their_space_and_specials_are_unwritable() -> None:
    tok, compiler = wordpiece()
    vocab = compiler.vocab
    assert (vocab.kind, vocab.exact, vocab.lowercase) == ("wordpiece", False, True)
    ids = tok("Select No. FROM players", add_special_tokens=False)["input_ids"]
    assert compiler.surface_text(ids) == "select no . from players"
    assert vocab.tokens[tok.convert_tokens_to_ids("##ing")] == b"ing"
    for name in ("[PAD]", "[CLS]", "[MASK]", "[unused7]"):
        assert vocab.tokens[tok.convert_tokens_to_ids(name)].startswith(SPECIAL_MARKER)
    assert vocab.tokens[tok.convert_tokens_to_ids("[unused0]")] == b" "  # the lone space forced text may need
    assert vocab.end_ids == (tok.sep_token_id,)
    assert tok.sep_token_id not in vocab.special_ids  # the end token stays allowed once a grammar is done
