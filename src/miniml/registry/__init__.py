"""Tracking and the model registry, on MLflow (embedded SQLite by default).

- ``tracking``: ``RunTracker`` (one MLflow run per job) and ``default_tracking_uri``.
- ``store``: register model folders as versions, aliases, ``local_copy`` of a ``models:/`` URI (what
  ``miniml.runtime.resolve`` calls for registry URIs).
- ``promote``: the promotion gate that moves ``champion``.
- ``backend`` (the cached MLflow client), ``uris``, ``environment``, ``views``, ``ui``: their helpers.

Submodules import MLflow (about a second), so this package imports none of them itself.
"""
