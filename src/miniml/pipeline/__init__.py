"""Pipelines: data → train → optimize → evaluate → gate → serve from one YAML file, resumable.

- ``config``: ``PipelineConfig`` and ``load_pipeline`` (every step config validated up front).
- ``run``: ``run_pipeline`` (one line per step, stops at the first failure).
- ``steps``: each step as a call into the library function behind its own command.
- ``state``: the per-pipeline state file that lets a re-run skip finished steps.
"""

from miniml.pipeline.config import Pipeline, PipelineConfig, load_pipeline
from miniml.pipeline.run import PipelineResult, run_pipeline

__all__ = ["Pipeline", "PipelineConfig", "PipelineResult", "load_pipeline", "run_pipeline"]
