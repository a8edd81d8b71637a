"""Tiny generative models for tests, built locally: a byte-level BPE tokenizer trained on the test's texts and
randomly initialised T5 / BART / GPT-2 configs of a few layers. No weights come from anywhere."""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

SPECIALS = ["<pad>", "</s>", "<s>", "<unk>"]  # ids 0, 1, 2, 3
PAD, EOS, BOS = 0, 1, 2

# A small seq2seq-style task with structure to learn: words → digits, prefixed like the real prompts.
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PAIRS = [
    (f"digits: {WORDS[a]} {WORDS[b]} {WORDS[c]}", f"{a} {b} {c}")
    for a, b, c in [(i % 10, (i * 3) % 10, (i * 7 + 1) % 10) for i in range(24)]
]


def build_tokenizer(folder: Path, texts: Sequence[str], *, seq2seq: bool, vocab_size: int = 400) -> None:
    """Train a byte-level BPE on ``texts`` and save it as a transformers fast tokenizer."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if seq2seq:  # T5-style: the encoder input ends with </s>
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", bos_token="<s>", unk_token="<unk>"
    )
    wrapped.save_pretrained(str(folder))


def _texts() -> list[str]:
    return [t for pair in PAIRS for t in pair] + [" ".join(WORDS), "0 1 2 3 4 5 6 7 8 9"]


def build(kind: str, folder: Path, *, chat_template: str | None = None) -> Path:
    """Save a tiny ``t5`` / ``bart`` / ``gpt2`` model plus tokenizer into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    build_tokenizer(folder, _texts(), seq2seq=kind != "gpt2")
    tok = PreTrainedTokenizerFast.from_pretrained(str(folder))
    if chat_template:
        tok.chat_template = chat_template
        tok.save_pretrained(str(folder))
    size = len(tok)
    if kind == "t5":
        config = T5Config(
            vocab_size=size, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
            pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD, dropout_rate=0.0,
        )  # fmt: skip
        model = T5ForConditionalGeneration(config)
    elif kind == "bart":
        config = BartConfig(
            vocab_size=size, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
            pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS, decoder_start_token_id=EOS, dropout=0.0,
            forced_eos_token_id=None,
        )  # fmt: skip
        model = BartForConditionalGeneration(config)
    elif kind == "gpt2":
        config = GPT2Config(
            vocab_size=size, n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=BOS,
            eos_token_id=EOS, pad_token_id=PAD, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )  # fmt: skip
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(kind)
    model.save_pretrained(str(folder))
    return folder


SIMPLE_CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)


_ROOT: Path | None = None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: tiny models on a busy 2-core machine are many times faster that way."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


def _root() -> Path:
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="miniml-tiny-"))
        atexit.register(shutil.rmtree, _ROOT, True)
    return _ROOT


@functools.cache
def model_path(kind: str) -> Path:
    """A tiny untrained model of ``kind``, built once per test session (read-only for tests)."""
    return build(kind, _root() / f"base-{kind}")


def settings_for(kind: str, path: Path, **extra: Any) -> Any:
    """Seq2seq or causal-LM settings with small token caps for a tiny model."""
    from miniml.tasks.causal_lm import CausalLMSettings
    from miniml.tasks.seq2seq import Seq2SeqSettings

    schema = CausalLMSettings if kind == "gpt2" else Seq2SeqSettings
    return schema.model_validate(
        {"base": str(path), "max_input_tokens": 32, "max_target_tokens": 12, **extra}
    )


def train_steps(loaded: Any, fmt: Any, steps: int = 60, lr: float = 1e-2, seed: int = 0) -> list[float]:
    """A few plain optimizer steps on PAIRS (no Trainer: fast and deterministic); returns the losses."""
    import torch

    from miniml.tasks.generative import data_collator, encode_examples

    torch.manual_seed(seed)
    features = encode_examples(fmt, loaded.tokenizer, [p[0] for p in PAIRS], [p[1] for p in PAIRS])
    batch = data_collator(loaded.tokenizer)(features)
    params = [p for p in loaded.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    loaded.model.train()
    losses = []
    with one_thread():
        for _ in range(steps):
            loss = loaded.model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    loaded.model.eval()
    return losses


def trained_folder(kind: str, lora: bool = False, merge: bool = True) -> Path:
    """A tiny model trained a few steps and saved as a miniml model folder (built once per session).

    With ``lora`` one trained adapter is saved twice: adapter-only (``merge=False``) and merged.
    """
    folders = _trained(kind, lora)
    return folders[0] if merge or not lora else folders[1]


@functools.cache
def _trained(kind: str, lora: bool) -> tuple[Path, Path]:
    import torch

    from miniml.tasks import get_task

    extra: dict[str, Any] = {}
    if lora:
        targets = ["c_attn"] if kind == "gpt2" else (["q", "v"] if kind == "t5" else ["q_proj", "v_proj"])
        extra["lora"] = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": targets, "merge": False}
    settings = settings_for(kind, model_path(kind), **extra)
    task: Any = get_task("causal_lm" if kind == "gpt2" else "seq2seq")
    torch.manual_seed(0)
    loaded = task.load_for_training(settings)
    task.prepare_for_training(loaded, settings)
    fmt = task.make_format(settings, loaded.tokenizer)
    train_steps(loaded, fmt, steps=100, lr=3e-2 if lora else 1e-2)
    common = {"name": f"tiny-{kind}"}  # base_model: the settings' base, the tiny model's folder
    if not lora:
        folder = _root() / f"model-{kind}"
        task.write_folder(folder, loaded, fmt, settings, common)
        return folder, folder
    adapter_only, merged = _root() / f"model-{kind}-lora-adapter", _root() / f"model-{kind}-lora-merged"
    task.write_folder(adapter_only, loaded, fmt, settings, common)
    settings.lora.merge = True  # type: ignore[union-attr]
    task.write_folder(merged, loaded, fmt, settings, common)
    return merged, adapter_only


@functools.cache
def endless_folder() -> Path:
    """An untrained tiny causal LM that never ends by itself (its end token is suppressed) and has room for
    4,096 positions: a generation runs until its token cap or until it is cancelled."""
    from miniml.tasks.causal_lm import CausalLMTask, load_for_training, make_format

    base = _root() / "base-endless"
    build_tokenizer(base, _texts(), seq2seq=False)
    config = GPT2Config(
        vocab_size=len(PreTrainedTokenizerFast.from_pretrained(str(base))), n_embd=32, n_layer=2, n_head=4,
        n_positions=4200, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
    )  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(str(base))
    settings = settings_for("gpt2", base)
    loaded = load_for_training(settings)
    loaded.model.generation_config.suppress_tokens = [EOS]
    folder = _root() / "model-endless"
    CausalLMTask().write_folder(
        folder, loaded, make_format(settings, loaded.tokenizer), settings, {"name": "endless"}
    )
    return folder
