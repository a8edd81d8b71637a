import threading

import numpy as np
import pytest
import torch

from miniml.errors import ModelError
from miniml.modelfolder import ModelInfo, read_info, write_info
from miniml.models import HashingBagSpec
from miniml.models.folder import save_model_folder
from miniml.models.registry import get_builder
from miniml.runtime.predictor import Predictor
from miniml.runtime.torch_predictor import TorchPredictor
from miniml.tasks import load_predictor

TEXTS = ["hej med dig", "jag heter anna", "", "x" * 5000]


@pytest.fixture
def folder(tmp_path):
    spec = HashingBagSpec(buckets=2048, dim=8, hidden=4)
    featurizer = spec.make_featurizer([])
    torch.manual_seed(0)
    module = get_builder("hashing_bag")(spec, ["da", "sv"], featurizer)
    info = ModelInfo(
        name="demo",
        task="classification",
        architecture="hashing_bag",
        labels=["da", "sv"],
        preprocessing=featurizer.preprocessing(),
    )
    save_model_folder(tmp_path / "m", module, featurizer, spec, info)
    return tmp_path / "m", module, featurizer


def test_predict_proba_matches_module(folder) -> None:
    path, module, featurizer = folder
    predictor = load_predictor(path, threads=1)
    assert isinstance(predictor, Predictor) and isinstance(predictor, TorchPredictor)
    assert predictor.info.labels == ["da", "sv"]
    probs = predictor.predict_proba(TEXTS)
    assert probs.dtype == np.float32 and probs.shape == (4, 2)
    module.eval()
    with torch.no_grad():
        expected = torch.softmax(module(**featurizer.batch(TEXTS))["logits"], -1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert predictor.predict_proba([]).shape == (0, 2)
    assert torch.get_num_threads() == 1


def test_logit_temperature_in_the_folder_scales_every_prediction(folder) -> None:
    path, module, featurizer = folder
    info = read_info(path)
    write_info(path, info.model_copy(update={"logit_temperature": 2.5}))
    probs = load_predictor(path).predict_proba(TEXTS)
    with torch.no_grad():
        expected = torch.softmax(module.eval()(**featurizer.batch(TEXTS))["logits"] / 2.5, -1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_label_weights_in_the_folder_shift_every_prediction(folder) -> None:
    path, module, featurizer = folder
    info = read_info(path)
    write_info(path, info.model_copy(update={"logit_temperature": 2.0, "label_weights": {"sv": 3.0}}))
    probs = load_predictor(path).predict_proba(TEXTS)
    with torch.no_grad():
        raw = torch.softmax(module.eval()(**featurizer.batch(TEXTS))["logits"] / 2.0, -1).numpy()
    shifted = raw * np.array([1.0, 3.0])  # the weight multiplies sv's probability, then renormalised
    np.testing.assert_allclose(probs, shifted / shifted.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert not np.allclose(probs, raw, atol=1e-3)


def test_thread_safe(folder) -> None:
    predictor = load_predictor(folder[0])
    expected = predictor.predict_proba(TEXTS)
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(predictor.predict_proba(TEXTS))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.allclose(r, expected) for r in results)


def test_broken_folders(folder) -> None:
    from miniml.modelfolder import read_info, write_info

    path = folder[0]
    good = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(
        ModelError, match=r"file model\.safetensors does not match its sha256 in miniml\.json"
    ):
        load_predictor(path)
    write_info(path, read_info(path))  # a manifest that vouches for the garbage: the loader still refuses
    with pytest.raises(ModelError, match="corrupted"):
        load_predictor(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"file model\.safetensors is missing"):
        load_predictor(path)
    (path / "model.safetensors").write_bytes(good)
    (path / "builder.json").write_text("{")
    with pytest.raises(ModelError, match=r"file builder\.json does not match"):
        load_predictor(path)
    write_info(path, read_info(path))
    with pytest.raises(ModelError, match=r"builder\.json is corrupted"):
        load_predictor(path)
    with pytest.raises(ModelError, match="not a miniml model folder"):
        load_predictor(path.parent)
    with pytest.raises(ModelError, match="no model folder or model URI"):
        load_predictor(path / "missing")


def test_nan_weights_are_refused_at_load_and_scores_checked(folder, tmp_path) -> None:
    from miniml.models.folder import load_model_folder
    from miniml.runtime.predictor import check_predictor, require_finite

    path, module, featurizer = folder
    with torch.no_grad():
        module.head[1].weight[0, 0] = float("nan")  # one weight is enough to poison every answer
    loaded = load_model_folder(path)
    save_model_folder(tmp_path / "nan", module, featurizer, loaded.spec, loaded.info)
    with pytest.raises(ModelError, match=r"tensor head\.1\.weight holds NaN or infinite values"):
        load_predictor(tmp_path / "nan")
    check_predictor(load_predictor(path))  # the healthy folder passes the warm-up check
    with pytest.raises(ModelError, match=r"not finite .* for 1 of 2 inputs \(first: input 1\)"):
        require_finite(np.array([[0.5, 0.5], [np.nan, 0.5]], dtype=np.float32), "probe")
