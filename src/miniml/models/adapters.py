"""LoRA adapters through ``peft``: settings, attaching them to a model, saving, loading and merging.

A model folder trained with LoRA holds the adapter on its own in ``adapter/`` (``adapter_config.json`` +
``adapter_model.safetensors``). With ``merge: true`` the adapter is also folded into the base weights and
the merged model is saved at the folder root, so serving needs no ``peft`` and no base model; without it the
folder holds only the adapter and the tokenizer, and loading reads the base model named in ``miniml.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from miniml.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from torch import nn

ADAPTER_DIR = "adapter"
# peft.TaskType member names: how peft wraps the model (encoder-decoder or decoder-only)
PeftTask = Literal["SEQ_2_SEQ_LM", "CAUSAL_LM"]


class LoraSettings(BaseModel):
    """LoRA hyper-parameters (``model.lora`` in a train config)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, le=1024, description="rank of the update matrices")
    alpha: int = Field(16, ge=1, description="scaling numerator: the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        min_length=1,
        description="names (last component) of the linear layers to adapt, e.g. q_proj/v_proj, q/v, c_attn",
    )
    merge: bool = Field(True, description="also save the adapter merged into the base weights")


def linear_module_names(model: nn.Module) -> list[str]:
    """Sorted last-component names of the layers LoRA can adapt (linear, conv1d, embedding)."""
    names = set()
    for full_name, module in model.named_modules():
        kind = type(module).__name__
        if full_name and kind in {"Linear", "Conv1D", "Embedding", "Linear8bitLt", "Linear4bit"}:
            names.add(full_name.rsplit(".", 1)[-1])
    return sorted(names)


def check_target_modules(model: nn.Module, targets: list[str]) -> None:
    """Raise a ConfigError naming the targets that match no layer, and the names that would."""
    available = linear_module_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(
            f"LoRA target module(s) {', '.join(missing)} do not exist in {type(model).__name__}",
            hint=f"set model.lora.target_modules to some of: {', '.join(available)}",
        )


def apply_lora(
    model: nn.Module, settings: LoraSettings, task_type: PeftTask, modules_to_save: Sequence[str] = ()
) -> nn.Module:
    """Wrap ``model`` in a peft LoRA model: adapter weights and ``modules_to_save`` stay trainable."""
    try:
        import peft
    except ImportError:
        raise ConfigError(
            "model.lora needs the peft package", hint="pip install 'miniml[generative]'"
        ) from None

    check_target_modules(model, settings.target_modules)
    config = peft.LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        modules_to_save=list(modules_to_save) or None,
        task_type=peft.TaskType[task_type],
    )
    return peft.get_peft_model(model, config)


def new_modules(model: nn.Module, new_weights: Sequence[str]) -> tuple[list[str], list[str]]:
    """The largest modules whose weights are all new (and shared with nothing), and new weights outside them.

    peft trains and saves such modules in full next to the adapter (``modules_to_save``): a low-rank update
    cannot repair randomly initialised layers such as a warm-started decoder's cross-attention.
    """
    new = set(new_weights)
    owners: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(param), []).append(name)
    shared = {n for names in owners.values() if len(names) > 1 for n in names}
    chosen: list[str] = []
    for name, module in model.named_modules():
        params = [f"{name}.{p}" for p, _ in module.named_parameters(remove_duplicate=False)]
        inside = any(name.startswith(c + ".") for c in chosen)
        if name and params and not inside and all(p in new and p not in shared for p in params):
            chosen.append(name)
    left = sorted(n for n in new if not any(n.startswith(c + ".") for c in chosen))
    return chosen, left


def is_peft_model(model: object) -> bool:
    """True when ``model`` carries peft adapters."""
    try:
        import peft
    except ImportError:  # peft is an optional extra
        return False
    return isinstance(model, peft.PeftModel)


def save_adapter(model: nn.Module, folder: Path) -> Path:
    """Save only the adapter weights and config under ``folder/adapter``; returns that folder."""
    target = Path(folder) / ADAPTER_DIR
    model.save_pretrained(str(target), safe_serialization=True)  # type: ignore[operator]
    return target


def merged(model: nn.Module) -> nn.Module:
    """The base model with the adapter folded into its weights (a plain transformers model)."""
    return model.merge_and_unload()  # type: ignore[operator]


def has_adapter(folder: Path) -> bool:
    return (Path(folder) / ADAPTER_DIR / "adapter_config.json").is_file()


def load_adapter(base: nn.Module, folder: Path) -> nn.Module:
    """Attach the adapter saved in ``folder/adapter`` to ``base`` for inference."""
    try:
        import peft
    except ImportError:
        raise ModelError(
            f"{folder} holds a LoRA adapter, which needs peft", hint="pip install 'miniml[generative]'"
        ) from None
    return peft.PeftModel.from_pretrained(base, str(Path(folder) / ADAPTER_DIR), is_trainable=False)
