"""Every shipped examples/*/data.yaml loads through PrepareConfig and names real catalog files."""

from pathlib import Path

import pytest

from miniml.config import load_config
from miniml.data.prepare import PrepareConfig, plan

REPO = Path(__file__).resolve().parents[3]
CONFIGS = sorted((REPO / "examples").glob("*/data.yaml"))


def test_every_example_has_a_data_config() -> None:
    names = {p.parent.name for p in CONFIGS}
    assert {"nordic-langid", "reviews", "text2sql", "summarize", "lora"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_example_data_config_validates_and_resolves(path: Path) -> None:
    config = load_config(PrepareConfig, path, base_dir_key="base_dir")
    the_plan = plan(config)  # resolves every catalog file pattern, fetches nothing
    assert all(s.files for s in the_plan.sources)
    assert len(the_plan.fingerprint) == 16
