"""Training-data augmentation for classification: short crops of the training texts.

Language identification (and any classifier served on short inputs: UI strings, search queries, chat lines)
meets texts far shorter than the sentences it was trained on. ``short_crops`` adds, for every training text,
random runs of ``min_words``..``max_words`` consecutive words with the text's label, so the model learns to
decide on a few words as well. Crops are drawn once, seeded, before training (the same config gives the same
rows); validation and test are never augmented. Written here because it is a few lines of pandas: the
augmentation libraries (nlpaug, textattack) bring models and word lists this does not need.
"""

from __future__ import annotations

import random

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator


class ShortCrops(BaseModel):
    """``short_crops:`` in a classification train config."""

    model_config = ConfigDict(extra="forbid")

    per_example: int = Field(1, ge=1, le=16, description="crops added per training text")
    min_words: int = Field(1, ge=1, le=1000, description="shortest crop, in words")
    max_words: int = Field(6, ge=1, le=1000, description="longest crop, in words")

    @model_validator(mode="after")
    def _ordered(self) -> ShortCrops:
        if self.min_words > self.max_words:
            raise ValueError(f"short_crops.min_words ({self.min_words}) exceeds max_words ({self.max_words})")
        return self


def add_short_crops(frame: pd.DataFrame, crops: ShortCrops, seed: int) -> pd.DataFrame:
    """``frame`` plus ``per_example`` crops of each text longer than ``min_words`` words (same other columns).

    A crop is shorter than its text (texts of ``min_words`` words or fewer get none), so no row is repeated.
    """
    rng = random.Random(seed)
    rows: list[int] = []
    texts: list[str] = []
    for position, text in enumerate(frame["input"].astype(str).tolist()):
        words = text.split()
        if len(words) <= crops.min_words:
            continue
        longest = min(crops.max_words, len(words) - 1)
        for _ in range(crops.per_example):
            size = rng.randint(crops.min_words, longest)
            start = rng.randint(0, len(words) - size)
            rows.append(position)
            texts.append(" ".join(words[start : start + size]))
    extra = frame.iloc[rows].copy()
    extra["input"] = texts
    return pd.concat([frame, extra], ignore_index=True)
