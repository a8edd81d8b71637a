import pytest
import torch

from miniml.errors import ModelError
from miniml.models import BiLSTMSpec, CharCNNSpec, HashingBagSpec, builder_names, get_builder

TEXTS = ["hej med dig", "", "jag heter anna och bor i stockholm", "x"]
LABELS = ["a", "b", "c"]


@pytest.mark.parametrize(
    "spec",
    [
        HashingBagSpec(buckets=2048, dim=8),
        HashingBagSpec(buckets=2048, dim=8, hidden=16, dropout=0.1),
        CharCNNSpec(embedding_dim=8, filters=4, widths=[2, 5], min_count=1),
        BiLSTMSpec(embedding_dim=8, hidden=4, layers=2, min_count=1),
        BiLSTMSpec(unit="word", embedding_dim=8, hidden=4, min_count=1),
    ],
    ids=["hashing_bag", "hashing_bag_hidden", "char_cnn", "bilstm_char", "bilstm_word"],
)
def test_forward_shapes_and_loss(spec) -> None:
    featurizer = spec.make_featurizer(TEXTS)
    module = get_builder(spec.kind)(spec, LABELS, featurizer)
    batch = featurizer.batch(TEXTS)
    out = module(**batch, labels=torch.tensor([0, 1, 2, 0]))
    assert out["logits"].shape == (4, 3)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert "loss" not in module(**batch)
    module.eval()
    with torch.inference_mode():  # a text's logits do not depend on the rest of its batch
        alone = module(**featurizer.batch([TEXTS[2]]))["logits"]
        together = module(**featurizer.batch(TEXTS))["logits"][2:3]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-4)


def test_registry_names_and_unknown() -> None:
    assert {"hashing_bag", "char_cnn", "bilstm", "pretrained"} <= set(builder_names())
    with pytest.raises(ModelError, match="unknown model architecture 'nope'"):
        get_builder("nope")


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="char_ngrams"):
        HashingBagSpec(char_ngrams=(4, 2))
    with pytest.raises(ValueError):
        HashingBagSpec(buckets=10)


@pytest.mark.parametrize("hidden", [0, 16])
def test_hashing_bag_for_inference_gives_the_same_logits(hidden: int) -> None:
    from miniml.models.hashing_bag import FoldedHashingBag, HashingBag

    torch.manual_seed(0)
    model = HashingBag(4096, 32, 5, hidden=hidden).eval()
    torch.nn.init.normal_(model.embedding.weight)  # a trained-looking table, not the tiny init
    ids = torch.randint(0, 4096, (300,))
    offsets = torch.tensor([0, 7, 8, 150, 299])
    fast = model.for_inference()
    assert isinstance(fast, FoldedHashingBag) == (hidden == 0)
    with torch.inference_mode():
        want, got = model(ids, offsets)["logits"], fast(ids, offsets)["logits"]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if hidden == 0:  # the folded table holds one logit per class instead of `dim` features
        assert fast.embedding.weight.shape == (4096, 5)
