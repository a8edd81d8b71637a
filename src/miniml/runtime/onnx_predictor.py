"""The ``onnx`` runtime of classifiers: a model folder's graph through onnxruntime, with its own featurizer.

Same preprocessing code as the torch path (``load_featurizer`` on the folder's ``miniml.json``), same output:
(B, C) float32 probabilities in ``info.labels`` order. Threads are set explicitly on the session
(``intra_op_num_threads``; one inter-op thread, sequential execution) so several server workers never
oversubscribe the cores.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from miniml.errors import ModelError
from miniml.modelfolder import ModelInfo, logit_offsets, read_info
from miniml.models.registry import load_featurizer

ONNX_FILE = "model.onnx"


def session_options(threads: int | None) -> object:
    """onnxruntime session options with a deliberate thread count (None: all cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about unused initializers are noise to users
    return opts


def open_session(file: Path, threads: int | None = None) -> object:
    """An onnxruntime CPU session for ``file``; a missing or corrupted graph is a ModelError."""
    import onnxruntime as ort

    if not Path(file).is_file():
        raise ModelError(f"ONNX model {file} does not exist", hint="copy the whole model folder")
    try:
        return ort.InferenceSession(str(file), sess_options=session_options(threads), providers=_providers())
    except Exception as err:  # onnxruntime raises its own exception types for bad graphs
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ModelError(f"cannot load ONNX model {file}: {first}") from None


def _providers() -> list[str]:
    import onnxruntime as ort

    wanted = os.environ.get("MINIML_ORT_PROVIDERS", "").split(",")
    available = ort.get_available_providers()
    chosen = [p for p in wanted if p in available]
    return chosen or ["CPUExecutionProvider"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    shifted = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32, copy=False)


class OnnxPredictor:
    """Texts → featurizer (numpy) → onnxruntime → probabilities; ``predict_proba`` is thread-safe."""

    def __init__(
        self, path: Path, info: ModelInfo | None = None, *, threads: int | None = None, file: str = ONNX_FILE
    ) -> None:
        self.path = Path(path)
        self.info = info or read_info(self.path)
        self.threads = int(threads or os.cpu_count() or 1)
        self.featurizer = load_featurizer(self.path, self.info.preprocessing)
        self.session = open_session(self.path / file, self.threads)
        self.offsets = logit_offsets(self.info)
        self.input_names = [i.name for i in self.session.get_inputs()]  # type: ignore[attr-defined]

    def feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The featurizer's batch as int64 numpy arrays, limited to the graph's inputs."""
        batch = self.featurizer.batch(list(texts))
        # the tracer drops inputs the graph never reads (token_type_ids of a model that ignores them)
        return {name: np.asarray(batch[name].numpy(), dtype=np.int64) for name in self.input_names}

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.info.labels)), dtype=np.float32)
        # the folder's softmax temperature (calibration; 1 when scaling did not help) and label_weights
        # (a prior shift): see torch_predictor
        logits = self.outputs(texts) / np.float32(self.info.logit_temperature)
        return softmax(logits if self.offsets is None else logits + self.offsets)

    def outputs(self, texts: Sequence[str]) -> np.ndarray:
        """The graph's raw (B, C) output: a classifier's logits, an encoder's embeddings."""
        out = self.session.run(None, self.feeds(texts))[0]  # type: ignore[attr-defined]
        return np.asarray(out, dtype=np.float32)
