"""Evaluation and batch prediction: metrics, plots, reports, ``predict_file``."""

from miniml.evaluate.evaluate import EvaluationResult, evaluate_model, resolve_model_path
from miniml.evaluate.metrics import ClassificationMetrics, classification_metrics
from miniml.evaluate.predict import predict_file
from miniml.evaluate.report import write_report

__all__ = [
    "ClassificationMetrics",
    "EvaluationResult",
    "classification_metrics",
    "evaluate_model",
    "predict_file",
    "resolve_model_path",
    "write_report",
]
