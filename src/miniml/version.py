"""The miniml version (one place; ``miniml.__version__`` re-exports it)."""

__version__ = "0.1.0"
