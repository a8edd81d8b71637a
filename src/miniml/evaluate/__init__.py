"""miniml.evaluate."""
