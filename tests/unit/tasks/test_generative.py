"""Shared generative-task plumbing: model references, saving a model folder, reading it back."""

from __future__ import annotations

import json

import tiny_generative as tg
from miniml.modelfolder import read_info
from miniml.tasks import load_generator


def test_model_folder_records_format_generation_defaults_and_base() -> None:
    folder = tg.trained_folder("t5")
    info = read_info(folder)
    assert info.task == "seq2seq" and info.architecture == "hf"
    assert info.preprocessing["max_input_tokens"] == 32
    assert info.preprocessing["generation"]["max_new_tokens"] == 64
    assert info.base_model == str(tg.model_path("t5"))
    saved = json.loads((folder / "generation_config.json").read_text())
    assert saved["max_new_tokens"] == 64 and saved["decoder_start_token_id"] == tg.PAD
    assert (folder / "model.safetensors").is_file() and not (folder / "adapter").exists()
    assert load_generator(folder).default_params.max_new_tokens == 64
