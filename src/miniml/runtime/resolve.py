"""The one model URI resolver: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME`` or a folder.

Registry URIs go through the registry (a version is downloaded once into ``MINIML_HOME/models/``); a folder
is read directly, so resolving a folder never imports MLflow.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from miniml.errors import ModelError
from miniml.modelfolder import INFO_FILE, read_info
from miniml.registry.uris import ModelSource, is_model_uri


def resolve(uri: str | Path) -> ModelSource:
    """The local model folder ``uri`` points at, with its registry name, version and alias if it has them."""
    if is_model_uri(uri):
        from miniml.registry.store import local_copy  # MLflow loads only for registry URIs (~1 s)

        return local_copy(str(uri))
    folder = Path(uri).expanduser()
    if not folder.exists():
        raise ModelError(
            f"no model folder or model URI {str(uri)!r}",
            hint="pass models:/NAME@ALIAS, models:/NAME/VERSION or a folder written by `miniml train`",
        )
    return ModelSource(str(uri), folder.resolve(), read_info(folder).name)


def version_key(source: ModelSource) -> str:
    """A name unique to the model version (folders: a hash of their ``miniml.json``): a cache namespace."""
    if source.version is not None:
        return f"{source.name}@v{source.version}"
    digest = hashlib.sha256((source.path / INFO_FILE).read_bytes()).hexdigest()[:16]
    return f"{source.name}@{digest}"
