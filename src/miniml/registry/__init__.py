"""miniml.registry."""
