"""miniml.optimize."""
