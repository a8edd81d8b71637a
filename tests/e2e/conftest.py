"""Fixtures of the end-to-end tests (shared across modules, so session-scoped ones run once)."""

from __future__ import annotations

from serve_support import api_server, toy_model

__all__ = ["api_server", "toy_model"]
