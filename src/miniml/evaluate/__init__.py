"""Evaluation and batch prediction, for every task: ``evaluate_model`` (metrics + report), ``predict_file``.

What is scored and how is the task's (``miniml.tasks``); the metric code is :mod:`miniml.metrics`.
"""

from miniml.evaluate.evaluate import EvaluationResult, evaluate_model, score_of
from miniml.evaluate.predict import predict_file
from miniml.metrics.classification import ClassificationMetrics, classification_metrics
from miniml.metrics.report import write_report

__all__ = [
    "ClassificationMetrics",
    "EvaluationResult",
    "classification_metrics",
    "evaluate_model",
    "predict_file",
    "score_of",
    "write_report",
]
