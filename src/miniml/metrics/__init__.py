"""Metrics and report files, for every task: what a score means, computed one way.

- ``classification``: accuracy, macro/weighted P/R/F1, per-class P/R/F1, confusion matrix (scikit-learn);
- ``text``: exact match, token F1, ROUGE of generated text against one or more references;
- ``report``: ``metrics.json`` + ``report.md`` (+ ``confusion_matrix.png``, ``curves.png``); ``plots``.

Tasks pick and compute their metrics (``miniml.tasks``); this package only knows how to score.
"""
