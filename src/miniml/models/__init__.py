"""miniml.models."""
