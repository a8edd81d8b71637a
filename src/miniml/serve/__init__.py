"""miniml.serve."""
