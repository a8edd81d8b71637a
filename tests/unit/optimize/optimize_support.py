"""Tiny real models and a tiny dataset for the optimize tests, built locally in seconds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from miniml.data.dataset import Dataset, write_dataset
from miniml.modelfolder import ModelInfo

LABELS = ["neg", "neu", "pos"]
WORDS = {
    "neg": "awful boring dull terrible bad waste worst painful",
    "neu": "okay average plain fine ordinary middling usual normal",
    "pos": "great superb lovely brilliant good wonderful best moving",
}
FILLER = "the movie film plot acting was is a and of it this with story".split()  # noqa: SIM905


def texts_for(label: str, n: int, seed: int) -> list[str]:
    gen = torch.Generator().manual_seed(seed)
    words = WORDS[label].split()
    out = []
    for _ in range(n):
        length = int(torch.randint(3, 14, (1,), generator=gen))
        picks = [
            words[int(torch.randint(len(words), (1,), generator=gen))]
            if torch.rand(1, generator=gen) < 0.4
            else FILLER[int(torch.randint(len(FILLER), (1,), generator=gen))]
            for _ in range(length)
        ]
        out.append(" ".join(picks))
    return out


def make_dataset(
    name: str = "tinyreviews", rows: int = 40, splits: tuple[str, ...] = ("train", "validation", "test")
) -> Dataset:
    """A small 3-class dataset of short review-like texts, written as a real prepared dataset."""
    frames = {}
    for i, split in enumerate(splits):
        inputs, targets = [], []
        for j, label in enumerate(LABELS):
            inputs += texts_for(label, rows // len(LABELS), seed=100 * i + j)
            targets += [label] * (rows // len(LABELS))
        frames[split] = pd.DataFrame({"input": inputs, "target": targets})
    return write_dataset(name, f"fp{rows}{len(splits)}", frames, config={"rows": rows})


def info_for(name: str, architecture: str, dataset: Dataset, featurizer: object) -> ModelInfo:
    return ModelInfo(
        name=name,
        task="classification",
        architecture=architecture,
        labels=LABELS,
        preprocessing=featurizer.preprocessing(),  # type: ignore[attr-defined]
        dataset={"name": dataset.name, "fingerprint": dataset.fingerprint},
    )


def fit_briefly(
    module: torch.nn.Module, featurizer: object, dataset: Dataset, steps: int = 60, lr: float = 0.05
) -> None:
    """A few full-batch Adam steps on the train split, so the model is accurate (deterministic seed)."""
    frame = dataset.split("train")
    batch = featurizer.batch(frame["input"].tolist())  # type: ignore[attr-defined]
    labels = torch.tensor([LABELS.index(t) for t in frame["target"]])
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    for _ in range(steps):
        optimizer.zero_grad()
        module(**batch, labels=labels)["loss"].backward()
        optimizer.step()
    module.eval()


def make_hashing_bag(folder: Path, dataset: Dataset, *, name: str = "tinybag", fit: bool = False) -> Path:
    """A hashing_bag model folder (EmbeddingBag + offsets + hidden layer), random or briefly fitted."""
    from miniml.models.folder import save_model_folder
    from miniml.models.hashing_bag import HashingBagSpec
    from miniml.models.registry import get_builder

    torch.manual_seed(0)
    spec = HashingBagSpec(buckets=4096, dim=16, hidden=32)
    featurizer = spec.make_featurizer([])
    module = get_builder("hashing_bag")(spec, list(LABELS), featurizer)
    with torch.no_grad():
        module.embedding.weight.normal_(0, 1.0)  # fastText's tiny init gives near-uniform outputs
    if fit:
        fit_briefly(module, featurizer, dataset)
    save_model_folder(folder, module, featurizer, spec, info_for(name, "hashing_bag", dataset, featurizer))
    return folder


def make_tiny_bert_source(folder: Path) -> Path:
    """A tiny BERT classifier + WordPiece tokenizer saved as a Hugging Face folder."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *sorted({w for ws in WORDS.values() for w in ws.split()} | set(FILLER)),
    ]
    # transformers 5 takes the vocabulary itself (a `vocab_file=` keyword is silently ignored: all [UNK])
    BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=len(LABELS),
    )
    BertForSequenceClassification(config).save_pretrained(str(folder))
    return folder


def make_tiny_bert(
    folder: Path, dataset: Dataset, source: Path, *, name: str = "tinybert", fit: bool = False
) -> Path:
    """A miniml model folder around the tiny BERT (architecture ``hf``, tokenizer featurizer), random or
    briefly fitted."""
    from miniml.models.folder import architecture_of, save_model_folder
    from miniml.models.pretrained import PretrainedSpec
    from miniml.models.registry import get_builder

    spec = PretrainedSpec(name_or_path=str(source), pooling="cls", max_length=32)
    featurizer = spec.make_featurizer([])
    module = get_builder("pretrained")(spec, list(LABELS), featurizer)
    if fit:
        torch.manual_seed(0)
        fit_briefly(module, featurizer, dataset, steps=40, lr=3e-3)
    save_model_folder(
        folder, module, featurizer, spec, info_for(name, architecture_of(spec), dataset, featurizer)
    )
    return folder
