"""miniml.pipeline."""
