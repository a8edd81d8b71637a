"""The step scheduler: same answers as the static loop while rows join and leave at any step."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import jsonschema
import pytest
import torch
from transformers import PreTrainedTokenizerFast

import tiny_generative as tg
from miniml.guided.spec import GuidedSpec
from miniml.runtime.decoding.rows import RowRequest
from miniml.runtime.decoding.sampling import pick_tokens, top_p_filter
from miniml.runtime.decoding.scheduler import ContinuousScheduler
from miniml.runtime.generation import GenerationParams, GenerationResult, Generator
from miniml.tasks import load_generator
from tiny_generative import one_torch_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = [p[0] for p in tg.PAIRS[:6]]
CAPS = (3, 8, 5, 12, 2, 7)


@pytest.fixture(scope="module", params=["t5", "gpt2", "bert2bert"])
def generator(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Generator:
    with tg.one_thread():
        if request.param == "bert2bert":  # the text2sql example's shape: absolute positions, cross-attention
            return load_generator(bert2bert(tmp_path_factory.mktemp("bert2bert")))
        return load_generator(tg.trained_folder(request.param))


def bert2bert(root: Path) -> Path:
    """An untrained encoder-decoder warm-started from a tiny BERT (EncoderDecoderModel), as a model folder."""
    from transformers import BertConfig, BertModel

    from miniml.tasks.seq2seq import Seq2SeqSettings, Seq2SeqTask, load_for_training, make_format

    encoder = root / "bert"
    tg.build_tokenizer(encoder, [t for pair in tg.PAIRS for t in pair], seq2seq=True)
    size = len(PreTrainedTokenizerFast.from_pretrained(str(encoder)))
    config = BertConfig(
        vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=128, pad_token_id=tg.PAD,
    )  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(encoder))
    settings = Seq2SeqSettings.model_validate(
        {"warm_start": {"encoder": str(encoder)}, "max_input_tokens": 32}
    )
    loaded = load_for_training(settings)
    folder = root / "model"
    Seq2SeqTask().write_folder(folder, loaded, make_format(settings), settings, {"name": "b2b"})
    return folder


def requests(
    generator: Generator, params: list[GenerationParams], out: dict[int, object]
) -> list[RowRequest]:
    return [
        RowRequest(generator.encode_prompt(p), q, on_done=lambda r, k=k: out.__setitem__(k, r))
        for k, (p, q) in enumerate(zip(PROMPTS, params, strict=True))
    ]


def alone(generator: Generator, params: list[GenerationParams]) -> list[GenerationResult]:
    """Each prompt through the static loop on its own."""
    return [generator.run([generator.encode_prompt(p)], [q])[0] for p, q in zip(PROMPTS, params, strict=True)]


def test_rows_joining_mid_batch_get_the_static_loops_answers(generator: Generator) -> None:
    params = [GenerationParams(max_new_tokens=n) for n in CAPS]
    static = [
        generator.run([generator.encode_prompt(p)], [q])[0] for p, q in zip(PROMPTS, params, strict=True)
    ]
    out: dict[int, object] = {}
    rows = requests(generator, params, out)
    scheduler = ContinuousScheduler(generator, max_rows=3)
    assert scheduler.static_reason is None
    scheduler.admit(rows[:1])
    scheduler.step()
    scheduler.step()  # row 0 (3 tokens) is done now; rows 1-2 join a batch whose cache is 3 steps long
    scheduler.admit(rows[1:3])
    scheduler.step()
    scheduler.run(rows[3:])  # the rest join as slots free up
    assert [out[k] for k in range(len(PROMPTS))] == static
    assert scheduler.active == 0 and scheduler.state is None


def test_each_row_keeps_its_settings_stops_and_cancel_flag(generator: Generator) -> None:
    out: dict[int, object] = {}
    cancel = threading.Event()
    cancel.set()
    params = [
        GenerationParams(max_new_tokens=8),
        GenerationParams(max_new_tokens=8, temperature=1.5, top_p=0.9),
        GenerationParams(max_new_tokens=8, stop=(" ",)),
        GenerationParams(max_new_tokens=8),
    ]
    rows = requests(generator, [*params, params[0], params[0]], out)[:4]
    rows[3].cancel = cancel
    pieces: list[str] = []
    rows[0].on_piece = pieces.append
    ContinuousScheduler(generator, max_rows=4).run(rows)
    results = [out[k] for k in range(4)]
    assert all(isinstance(r, GenerationResult) for r in results)
    greedy = generator.run([rows[0].ids], [params[0]])[0]
    assert results[0] == greedy and "".join(pieces) == greedy.text  # streamed pieces join to the answer
    assert " " not in results[2].text and results[2].finish_reason == "stop"  # type: ignore[union-attr]
    assert results[3].finish_reason == "cancelled"  # type: ignore[union-attr]


def test_guided_and_free_rows_share_steps() -> None:
    generator = load_generator(tg.trained_folder("gpt2"))
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}},
        "required": ["n"],
        "additionalProperties": False,
    }
    compiled = generator.constraint_for("", GuidedSpec(json_schema=schema))
    out: dict[int, object] = {}
    sampling = GenerationParams(max_new_tokens=30, temperature=1.0)
    rows = requests(generator, [sampling] * 6, out)
    for row in rows[::2]:
        row.constraint = compiled
    ContinuousScheduler(generator, max_rows=4).run(rows)
    for k in range(0, 6, 2):
        jsonschema.validate(json.loads(out[k].text), schema)  # type: ignore[attr-defined]


def test_a_model_it_cannot_step_runs_through_the_static_loop() -> None:
    generator = load_generator(tg.trained_folder("bart"))
    scheduler = ContinuousScheduler(generator, max_rows=4)
    assert scheduler.static_reason and "bart" in scheduler.static_reason
    out: dict[int, object] = {}
    params = [GenerationParams(max_new_tokens=n) for n in CAPS]
    scheduler.run(requests(generator, params, out))
    static = [
        generator.run([generator.encode_prompt(p)], [q])[0] for p, q in zip(PROMPTS, params, strict=True)
    ]
    assert [out[k] for k in range(len(PROMPTS))] == static


def test_sampling_is_per_row() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])
    gen = torch.Generator().manual_seed(0)
    picks = {tuple(pick_tokens(logits, [0.0, 5.0], [1.0, 1.0], gen).tolist()) for _ in range(50)}
    assert {p[0] for p in picks} == {1}  # greedy row
    assert len({p[1] for p in picks}) > 1  # hot row samples
    kept = top_p_filter(torch.log(torch.tensor([[0.6, 0.3, 0.1]])), torch.tensor([0.5]))
    assert torch.isinf(kept[0, 1:]).all() and not torch.isinf(kept[0, 0])
