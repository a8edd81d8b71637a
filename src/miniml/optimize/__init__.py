"""Model optimization: ONNX export, int8 quantization, pruning, an honest comparison, and registration.

``optimize_model(uri, OptimizeConfig(onnx=True, int8=True))`` is what ``miniml optimize`` runs.
``miniml.optimize.onnx_runtime`` is the ``onnx`` runtime that ``miniml.inference.load_predictor`` uses.
"""

from __future__ import annotations

from miniml.optimize.config import OptimizeConfig
from miniml.optimize.run import OptimizeResult, QualityGateError, optimize_model

__all__ = ["OptimizeConfig", "OptimizeResult", "QualityGateError", "optimize_model"]
