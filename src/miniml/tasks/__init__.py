"""miniml.tasks."""
