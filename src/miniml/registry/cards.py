"""``miniml models card``: the model card (``README.md``) of a registered version or a model folder.

A registered version's card is read without downloading its weights: only the ``README.md`` artifact of
its source is fetched (from the tracking server, S3 or the local store). A version
registered before cards existed has none; its card is rendered from the ``miniml.json`` its tags carry
(the same renderer training uses, so the content is what the folder would hold).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.exceptions import MlflowException

from miniml.errors import ModelError
from miniml.modelcard import CARD_FILE, render_card
from miniml.modelfolder import INFO_FILE, read_info
from miniml.registry.backend import default_tracking_uri
from miniml.registry.store import ModelVersion, download_version, get_version, latest_version
from miniml.registry.uris import is_model_uri, parse_model_uri


def model_card(ref: str) -> str:
    """The card of ``ref``: a model folder, ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` /
    ``models:/NAME``, or the same without the ``models:/`` prefix (``NAME@ALIAS``)."""
    folder = Path(ref).expanduser()
    if not is_model_uri(ref) and (folder / INFO_FILE).is_file():
        return folder_card(folder)
    if not is_model_uri(ref) and ("/" in ref.strip("/") and not ref.strip("/").split("/")[-1].isdigit()):
        raise ModelError(
            f"{ref!r} is neither a model folder nor a registered model",
            hint="pass NAME@ALIAS, NAME/VERSION, models:/NAME@ALIAS or a folder written by `miniml train`",
        )
    uri = ref if is_model_uri(ref) else f"models:/{ref}"
    parsed = parse_model_uri(uri)
    if parsed.alias:
        mv = get_version(parsed.name, parsed.alias)
    elif parsed.version is not None:
        mv = get_version(parsed.name, parsed.version)
    else:
        mv = latest_version(parsed.name)
    return version_card(mv)


def folder_card(folder: Path) -> str:
    """The folder's ``README.md``, or its card rendered from ``miniml.json`` when it has none."""
    card = folder / CARD_FILE
    if card.is_file():
        return card.read_text(encoding="utf-8")
    return render_card(read_info(folder))


def version_card(mv: ModelVersion) -> str:
    """The card of a registered version, downloading at most the one ``README.md`` file."""
    downloaded = _download_card(mv)
    if downloaded is not None:
        return downloaded
    if mv.info is not None:
        return render_card(mv.info)
    return folder_card(download_version(mv))  # no card and no miniml.json in the tags: fetch the folder


def _download_card(mv: ModelVersion) -> str | None:
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="miniml-card-") as tmp:
        try:
            got = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{mv.source.rstrip('/')}/{CARD_FILE}",
                dst_path=tmp,
                tracking_uri=default_tracking_uri(),
            )
            return Path(got).read_text(encoding="utf-8")
        except (MlflowException, OSError):  # a version registered before cards existed
            return None
