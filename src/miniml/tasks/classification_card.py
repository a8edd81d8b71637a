"""What the model card of a classifier says (``ClassificationTask.card``, see :mod:`miniml.modelcard`):
its label set, the architecture in words, whether plain ``transformers`` loads the folder exactly (and why
not when it refuses), and the limits of a closed label set: a catch-all label's training rows, the weakest
label on test."""

from __future__ import annotations

from miniml.modelcard import CardText, by_count, test_metrics
from miniml.modelfolder import ModelInfo

ARCHITECTURES = {
    "hf": "a pretrained transformer encoder with its sequence-classification head (first token)",
    "hf_mean_pool": "a pretrained transformer encoder, attention-masked mean pooling and a linear head",
    "hashing_bag": "hashed character and word n-grams, mean-pooled embeddings and a linear head",
    "char_cnn": "character embeddings, convolutions and max pooling",
    "bilstm": "embeddings and a bidirectional LSTM",
}
PRETRAINED = ("hf", "hf_mean_pool")


def loads_in_transformers(info: ModelInfo) -> bool:
    """Whether plain ``transformers`` loads this folder with the same probabilities miniml gives."""
    return (
        info.architecture == "hf"
        and info.runtime == "torch"
        and not getattr(info, "quantization", None)
        and info.logit_temperature == 1.0  # a fitted temperature is folded into the weights
        and all(w == 1.0 for w in info.label_weights.values())
    )


def what_it_does(info: ModelInfo) -> list[str]:
    labels = ", ".join(f"`{x}`" for x in info.labels)
    return [
        f"Assigns each input text one of {len(info.labels)} labels: {labels}, with a probability"
        " for every label (they sum to 1)."
    ]


def architecture(info: ModelInfo) -> str:
    words = ARCHITECTURES.get(info.architecture)
    return f"`{info.architecture}`: {words}" if words else f"`{info.architecture}`"


def how_to_use(info: ModelInfo) -> list[str]:
    lines = ["Python: `miniml.tasks.load_predictor(folder).predict_proba(texts)` (columns in label order)."]
    if loads_in_transformers(info):
        lines.append(
            "Plain `transformers` loads it too, with the same probabilities: "
            "`AutoModelForSequenceClassification.from_pretrained(folder)` and `AutoTokenizer`."
        )
    elif info.architecture in PRETRAINED:
        lines.append(f"Plain `transformers` refuses this folder on purpose: {why_not_transformers(info)}.")
    return lines


def why_not_transformers(info: ModelInfo) -> str:
    if info.runtime == "onnx":
        return "it holds an ONNX graph (`model.onnx`) for onnxruntime, not PyTorch weights"
    if info.architecture == "hf_mean_pool":
        why = "transformers has no class for its mean-pooling classification head"
    elif getattr(info, "quantization", None):
        why = "miniml quantizes its weights to int8 when it loads them; transformers would answer differently"
    else:
        why = "miniml divides its logits by a calibrated temperature that transformers would not apply"
    return (
        f"{why}. Its `config.json` names a model type transformers does not know (with this reason), so "
        "every Auto class fails instead of building a freshly initialised head; the real config is "
        "`hf_config.json`"
    )


def intended_use(info: ModelInfo, like: str) -> list[str]:
    return [
        f"Labelling {like} with one of its {len(info.labels)} labels, behind `miniml serve` or in batch "
        "with `miniml predict`; use the probabilities to route unsure answers to a person."
    ]


def known_limits(info: ModelInfo) -> list[str]:
    return [
        f"- Closed label set: every input gets one of the {len(info.labels)} labels, even a text that "
        "fits none of them; a high probability is not proof that the text belongs to the label set.",
        *catch_all_limits(info),
        *weakest(info),
    ]


def catch_all_limits(info: ModelInfo) -> list[str]:
    """A catch-all label (the one whose rows span the most values of an extra column, at least 3, e.g.
    nordic-langid's ``other`` by ``lang``): name what it was trained on."""
    lines = []
    for column, by_label in ((info.dataset or {}).get("composition") or {}).items():
        spans = {label: values for label, values in by_label.items() if label != "*"}
        if not spans:
            continue
        label = max(spans, key=lambda x: len(spans[x]))
        if len(spans[label]) >= 3:
            seen = ", ".join(str(v) for v, _ in by_count(spans[label]))
            lines.append(
                f"- `{label}` was trained on rows whose `{column}` is one of: {seen}. Inputs of any other "
                f"`{column}` are outside its training data: which label they get is not predictable."
            )
    return lines


def weakest(info: ModelInfo) -> list[str]:
    metrics = test_metrics(info)
    f1 = {label: metrics[f"f1/{label}"] for label in info.labels if f"f1/{label}" in metrics}
    if len(f1) < 2:
        return []
    label = min(f1, key=lambda x: f1[x])
    if max(f1.values()) - f1[label] < 0.005:
        return []
    return [f"- Weakest label on test: `{label}` (F1 {f1[label]:.3f})."]


CARD = CardText(
    words="Text classification",
    pipeline_tag="text-classification",
    what_it_does=what_it_does,
    architecture=architecture,
    how_to_use=how_to_use,
    intended_use=intended_use,
    known_limits=known_limits,
    loads_in_transformers=loads_in_transformers,
)
