"""Continuous batching: generation scheduled one decoding step at a time (see ``scheduler``)."""
