"""Model optimization: ONNX export, int8 quantization, pruning, an honest comparison, and registration.

``optimize_model(uri, OptimizeConfig(onnx=True, int8=True))`` is what ``miniml optimize`` runs: ``run`` checks
the request against the model's task (``Task.optimize``) and hands it to its family, ``classifier``
(prune → fine-tune → ONNX → fuse → int8, via ``steps``) or ``generative`` (PyTorch int8, pruning);
``outcome`` holds what both share (quality gate, tracking, registration). The optimized folders run on the
runtimes of :mod:`miniml.runtime` (ONNX Runtime; int8 re-applied at load time).
"""

from __future__ import annotations

from miniml.optimize.config import OptimizeConfig
from miniml.optimize.outcome import OptimizeResult, QualityGateError
from miniml.optimize.run import optimize_model

__all__ = ["OptimizeConfig", "OptimizeResult", "QualityGateError", "optimize_model"]
