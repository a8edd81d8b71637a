"""Model URI parsing."""

from __future__ import annotations

import pytest

from miniml.errors import ModelError, RegistryError
from miniml.registry.uris import ModelRef, check_alias, check_name, parse_model_uri, parse_version


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/nordic-langid@champion", ModelRef("nordic-langid", alias="champion")),
        ("models:/reviews/3", ModelRef("reviews", version=3)),
        ("models:/reviews", ModelRef("reviews")),
        ("models:/reviews/latest", ModelRef("reviews")),
        ("models:/a.b_c-1/12/", ModelRef("a.b_c-1", version=12)),
    ],
)
def test_parse_model_uri(uri: str, expected: ModelRef) -> None:
    assert parse_model_uri(uri) == expected
    assert parse_model_uri(str(expected)) == expected


@pytest.mark.parametrize(
    "uri",
    ["models:/", "models:/x/0", "models:/x/two", "models:/x@", "models:/x@1abc", "models:/x/1/2", "x/1"],
)
def test_bad_model_uris_are_one_line_model_errors(uri: str) -> None:
    with pytest.raises(ModelError) as err:
        parse_model_uri(uri)
    assert "\n" not in str(err.value)


def test_names_aliases_versions() -> None:
    assert check_name("nordic-langid") == "nordic-langid"
    assert check_alias("champion") == "champion"
    assert parse_version("7") == 7
    for bad_name in ["", "a/b", "a@b", "-x", "a b"]:
        with pytest.raises(RegistryError, match="invalid model name"):
            check_name(bad_name)
    for bad_alias in ["1", "latest", "a b", "x@y"]:
        with pytest.raises(RegistryError, match="invalid alias"):
            check_alias(bad_alias)
    for bad_version in ["0", "-1", "v1", ""]:
        with pytest.raises(RegistryError, match="invalid model version"):
            parse_version(bad_version)
