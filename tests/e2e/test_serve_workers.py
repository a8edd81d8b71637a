"""``batching.workers``: one model replica per worker thread, same answers as a single worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from miniml.serve.engine import ModelSet, load_models
from miniml.serve.metrics import ServeMetrics
from miniml.serve.settings import ServeSettings

pytestmark = pytest.mark.anyio

TEXTS = ["hej med dig", "jag heter", "eg er", "det er godt", "vi ses", "kva heiter du"] * 8


async def test_two_workers_load_two_replicas_and_answer_like_one(toy_model: Path) -> None:
    one = ServeSettings(models=[str(toy_model)])
    two = ServeSettings(models=[str(toy_model)], batching={"workers": 2, "max_batch_size": 2})
    answers = []
    for settings in (one, two):
        loaded = await asyncio.to_thread(load_models, settings)
        model = loaded[0][0]
        assert len(model.replicas) == settings.batching.workers - 1
        assert model.replica(1).predictor is not model.predictor or settings.batching.workers == 1
        models = ModelSet(settings, ServeMetrics())
        await models.start(loaded)
        served = models.get(model.name)
        assert served is not None
        results = await asyncio.gather(*(served.infer([t]) for t in TEXTS))
        await models.stop()
        answers.append(np.stack([out[0] for _, out in results]))
    np.testing.assert_allclose(answers[1], answers[0], rtol=1e-5, atol=1e-6)
