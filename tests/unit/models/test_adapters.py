"""LoRA adapters: bad target modules, adapter-only and merged folders reproduce the trained model."""

from __future__ import annotations

import pytest
import torch

import tiny_generative as tg
from miniml.errors import ConfigError
from miniml.modelfolder import read_info, write_info
from miniml.models.adapters import LoraSettings, apply_lora, linear_module_names
from miniml.runtime.generation import GenerationParams
from miniml.tasks import causal_lm, get_task, load_generator
from tiny_generative import one_torch_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = [p[0] for p in tg.PAIRS[:6]]


def test_unknown_target_modules_are_refused_with_the_available_names() -> None:
    loaded = causal_lm.load_for_training(tg.settings_for("gpt2", tg.model_path("gpt2")))
    assert "c_attn" in linear_module_names(loaded.model)
    with pytest.raises(ConfigError, match=r"q_proj do not exist in GPT2LMHeadModel.*c_attn"):
        apply_lora(loaded.model, LoraSettings(target_modules=["q_proj", "c_attn"]), "CAUSAL_LM")


@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_adapter_only_and_merged_folders_generate_identically(kind: str) -> None:
    merged = load_generator(tg.trained_folder(kind, lora=True, merge=True))
    adapter = load_generator(tg.trained_folder(kind, lora=True, merge=False))
    assert type(adapter.model).__name__.startswith("PeftModel")
    assert not type(merged.model).__name__.startswith("Peft")
    params = GenerationParams(max_new_tokens=6)
    assert merged.generate(PROMPTS, params) == adapter.generate(PROMPTS, params)
    batch = {k: v for k, v in adapter._pad([adapter.encode_prompt(p) for p in PROMPTS]).items()}
    if kind == "t5":
        batch["decoder_input_ids"] = torch.zeros((len(PROMPTS), 1), dtype=torch.long)
    with torch.inference_mode():
        torch.testing.assert_close(
            merged.model(**batch).logits, adapter.model(**batch).logits, atol=1e-4, rtol=0
        )


def test_lora_folder_records_the_adapter_alone() -> None:
    folder = tg.trained_folder("gpt2", lora=True, merge=False)
    info = read_info(folder)
    assert info.lineage["lora"]["r"] == 8 and info.lineage["lora"]["merged"] is False
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    assert not (folder / "model.safetensors").exists()
    assert read_info(tg.trained_folder("gpt2", lora=True, merge=True)).lineage["lora"]["merged"] is True


def test_lora_training_lowers_the_loss_and_leaves_base_weights_alone() -> None:
    settings = tg.settings_for("gpt2", tg.model_path("gpt2"), lora={"r": 8, "target_modules": ["c_attn"]})
    loaded = causal_lm.load_for_training(settings)
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    get_task("causal_lm").prepare_for_training(loaded, settings)
    losses = tg.train_steps(loaded, causal_lm.make_format(settings, loaded.tokenizer), steps=40, lr=3e-2)
    assert losses[-1] < losses[0] - 0.2  # a rank-8 update on a random base learns slowly, but it learns
    after = {
        n.replace("base_model.model.", "").replace(".base_layer", ""): p
        for n, p in loaded.model.named_parameters()
    }
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_an_adapter_folder_can_be_merged_into_a_full_precision_base(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The path quantized (QLoRA) training takes: merge into an unquantized copy of the base, never into int8.
    import shutil

    from miniml.tasks import load_generator

    source = tg.trained_folder("gpt2", lora=True, merge=False)
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    task = get_task("causal_lm")
    task.merge_into_full_precision(folder, task.prompt_format(read_info(folder)))
    write_info(folder, read_info(folder))  # as the task's write_folder does: miniml.json (manifest) last
    assert (folder / "model.safetensors").is_file()
    merged = load_generator(folder)
    assert not type(merged.model).__name__.startswith("Peft")
    params = GenerationParams(max_new_tokens=6)
    assert merged.generate(PROMPTS, params) == load_generator(source).generate(PROMPTS, params)
