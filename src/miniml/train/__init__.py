"""miniml.train."""
