"""miniml.backends."""
