"""Monitoring a nordic-langid server end to end: drift, feedback and online accuracy, canary, shadow.

Two small hashing_bag models are trained on slices of the real nordic-langid dataset (through the catalog)
and registered as versions 1 and 2; each test starts a real server on them and talks HTTP to it.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serve_support import ServerProcess, wait_until, write_yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nordic-langid"
WINDOW = 1000
BATCH = 50  # inputs per request when filling windows
CANARY_REQUESTS = 600


@dataclass
class LangidModels:
    v1: Path
    v2: Path
    dataset: Path
    test: list[str]
    test_labels: list[str]
    other_lang: list[str]  # test sentences of languages other than da/nb/nn/sv


@pytest.fixture(scope="module")
def langid(tmp_path_factory: pytest.TempPathFactory, mirror_dir: Path) -> Iterator[LangidModels]:
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, prepare
    from miniml.tasks.classification import ClassificationConfig
    from miniml.train import fit

    home = tmp_path_factory.mktemp("langid_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIML_HOME", str(home))
        mp.setenv("MINIML_DATA_MIRROR", str(mirror_dir))
        dataset = prepare(load_config(PrepareConfig, EXAMPLE / "data.yaml"))
        folders = []
        for seed, rows in ((1, 3000), (2, 1500)):
            slice_ = [
                f"dataset={dataset.path}",
                f"max_train_examples={rows}",
                "epochs=1",
                "threads=1",
                "short_crops=null",
                "model.buckets=16384",
                "model.dim=16",
                f"seed={seed}",
                "register_model=false",
            ]
            folders.append(
                fit(load_config(ClassificationConfig, EXAMPLE / "train.yaml", slice_)).model_folder
            )
        test = dataset.split("test")
        other = test[~test["lang"].isin(["da", "nb", "nn", "sv"])]
        yield LangidModels(
            folders[0],
            folders[1],
            dataset.path,
            test["input"].tolist(),
            test["target"].tolist(),
            other["input"].tolist(),
        )


def register(models: LangidModels) -> None:
    from miniml.registry.store import register_model

    assert register_model("nordic-langid", models.v1).version == 1
    assert register_model("nordic-langid", models.v2).version == 2


def serve(tmp: Path, extra: dict[str, Any], keys_file: Path | None = None) -> ServerProcess:
    config: dict[str, Any] = {
        "models": ["models:/nordic-langid/1"],
        "follow_aliases": False,
        "cache": {"backend": "none"},
        "batching": {"threads": 1},
        "monitor": {"drift": {"window": WINDOW, "min_interval_s": 0}},
        **extra,
    }
    if keys_file is not None:
        config["auth"] = {"keys_file": str(keys_file)}
    return ServerProcess(["--config", str(write_yaml(tmp / "serve.yaml", config))], tmp).wait_ready()


def send(http: httpx.Client, texts: list[str], headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Post ``texts`` in requests of BATCH inputs; the JSON answers."""
    answers = []
    for start in range(0, len(texts), BATCH):
        r = http.post(
            "/v1/models/nordic-langid/predict", json={"inputs": texts[start : start + BATCH]}, headers=headers
        )
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


def shuffled(text: str, rng: random.Random) -> str:
    """Each word's characters in random order: same lengths and letters, no real words."""
    return " ".join("".join(rng.sample(w, len(w))) for w in text.split(" "))


def test_drift_within_one_window_and_no_false_alarms(langid: LangidModels, tmp_path: Path) -> None:
    register(langid)
    server = serve(tmp_path, {})
    rng = random.Random(7)
    alarms, worst = 0, {}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(20):  # 20 windows of held-out in-distribution traffic
            send(http, rng.sample(langid.test, WINDOW))
            report = http.get("/v1/models/nordic-langid/drift").json()
            assert report["window"]["size"] == WINDOW and report["version"] == 1
            alarms += report["drift_detected"]
            for name, s in report["signals"].items():
                worst[name] = max(worst.get(name, 0.0), s["value"] / s["threshold"])
        ratios = {k: round(v, 2) for k, v in worst.items()}
        print(f"\nfalse alarms: {alarms} of 20 in-distribution windows of {WINDOW} inputs")
        print(f"largest statistic / threshold per signal over those windows: {ratios}")
        assert alarms <= 1

        send(http, [shuffled(t, rng) for t in rng.sample(langid.test, WINDOW)])
        report = http.get("/v1/models/nordic-langid/drift").json()
        assert report["drift_detected"], report
        assert report["signals"]["oov_rate"]["drift_detected"]
        assert not report["signals"]["chars"]["drift_detected"]  # shuffling keeps lengths
        for key in ("statistic", "value", "threshold", "drift_detected"):
            assert key in report["signals"]["labels"]

        send(http, rng.sample(langid.test, WINDOW))  # back to normal: the window forgets
        assert not http.get("/v1/models/nordic-langid/drift").json()["drift_detected"]
        send(http, [rng.choice(langid.other_lang) for _ in range(WINDOW)])  # only other languages
        report = http.get("/v1/models/nordic-langid/drift").json()
        assert report["drift_detected"] and report["signals"]["labels"]["drift_detected"]

        metrics = http.get("/metrics").text
        assert 'miniml_drift_detected{model="nordic-langid",role="champion",version="1"} 1.0' in metrics
        assert (
            'miniml_drift_score{model="nordic-langid",role="champion",signal="labels",version="1"}' in metrics
        )
    assert server.terminate() == 0


def test_feedback_gives_the_exact_online_accuracy(langid: LangidModels, tmp_path: Path) -> None:
    from miniml.serve.auth import add_key

    register(langid)
    keys_file = tmp_path / "keys.yaml"
    keys = {name: add_key(keys_file, name, admin=name == "ops") for name in ("alice", "bob", "ops")}
    log = tmp_path / "feedback.jsonl"
    server = serve(tmp_path, {"monitor": {"feedback": {"log": str(log)}}}, keys_file)
    auth = {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}
    pairs = list(zip(langid.test, langid.test_labels, strict=True))[:60]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        ids, right = [], 0
        for text, label in pairs:
            rid = f"req-{uuid.uuid4().hex}"
            r = http.post(
                "/v1/models/nordic-langid/predict",
                json={"inputs": [text]},
                headers={**auth["alice"], "X-Request-ID": rid},
            )
            assert r.headers["x-request-id"] == rid
            right += r.json()["predictions"][0]["label"] == label
            ids.append(rid)
        feedback = "/v1/models/nordic-langid/feedback"
        for rid, (_, label) in zip(ids[:50], pairs, strict=False):
            r = http.post(feedback, json={"request_id": rid, "label": label}, headers=auth["alice"])
            assert r.status_code == 200, r.text
        # the admin key may label anyone's request; another key may not
        assert (
            http.post(
                feedback, json={"request_id": ids[50], "label": pairs[50][1]}, headers=auth["bob"]
            ).status_code
            == 403
        )
        for rid, (_, label) in zip(ids[50:], pairs[50:], strict=True):
            assert (
                http.post(feedback, json={"request_id": rid, "label": label}, headers=auth["ops"]).status_code
                == 200
            )
        again = http.post(feedback, json={"request_id": ids[0], "label": "da"}, headers=auth["alice"])
        assert again.status_code == 409 and again.json()["error"]["code"] == "feedback_exists"
        unknown = http.post(feedback, json={"request_id": "nope", "label": "da"}, headers=auth["alice"])
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "prediction_not_found"
        bad = http.post(
            feedback, json={"request_id": ids[0], "label": "da", "index": 3}, headers=auth["alice"]
        )
        assert bad.status_code == 422

        online = http.get(feedback, headers=auth["alice"]).json()["online"]["champion"]
        assert online["count"] == len(pairs) and online["version"] == 1
        assert online["accuracy"] == right / len(pairs)  # exact: every labelled answer counted once
        metrics = http.get("/metrics").text
        assert (
            'miniml_online_accuracy{model="nordic-langid",role="champion",version="1"} '
            f"{right / len(pairs)}" in metrics
        )
    assert server.terminate() == 0

    # the feedback log is a data source for retraining
    from miniml.data.prepare import PrepareConfig, prepare

    config = PrepareConfig.model_validate(
        {
            "name": "langid-feedback",
            "sources": [{"path": str(log), "format": "jsonl", "input": "input", "target": "label"}],
            "split": {"train": 0.8, "validation": 0.1, "test": 0.1, "stratify": []},
        }
    )
    dataset = prepare(config)
    assert sum(len(dataset.split(s)) for s in dataset.splits()) == len({t for t, _ in pairs})


def test_canary_share_and_stickiness(langid: LangidModels, tmp_path: Path) -> None:
    register(langid)
    routing = {"nordic-langid": {"challenger": "models:/nordic-langid/2", "canary": 0.3}}
    server = serve(tmp_path, {"routing": routing})
    texts = langid.test
    clients = threading.local()  # one keep-alive client per thread: a new one per request costs more

    def version_of(i: int) -> int:
        if not hasattr(clients, "http"):
            clients.http = httpx.Client(base_url=server.url, timeout=30)
        body = {"inputs": [texts[i % len(texts)]]}
        r = clients.http.post(
            "/v1/models/nordic-langid/predict", json=body, headers={"X-Request-ID": f"canary-{i}"}
        )
        return int(r.json()["version"])

    # The share of a hash of the request id: 600 requests give it within ±0.05 (2.7 standard deviations)
    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(version_of, range(CANARY_REQUESTS)))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        share = versions.count(2) / len(versions)
        print(f"\ncanary share over {len(versions)} requests: {share:.3f} (setting 0.3)")
        assert abs(share - 0.3) <= 0.05
        repeat = http.post(
            "/v1/models/nordic-langid/predict", json={"inputs": ["hej"]}, headers={"X-Request-ID": "canary-7"}
        )
        assert repeat.json()["version"] == versions[7]  # same request id, same version
        metrics = http.get("/metrics").text
        assert (
            'miniml_rollout_requests_total{model="nordic-langid",role="challenger",version="2"} '
            f"{float(versions.count(2))}" in metrics
        )
    assert server.terminate() == 0


def test_shadow_agreement_equals_the_offline_comparison(langid: LangidModels, tmp_path: Path) -> None:
    from miniml.monitor.signals import normalize
    from miniml.tasks import load_predictor

    register(langid)
    routing = {"nordic-langid": {"challenger": "models:/nordic-langid/2", "shadow": True}}
    server = serve(tmp_path, {"routing": routing})
    texts = random.Random(3).sample(langid.test, 400)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        answers = send(http, texts)
        assert {a["version"] for a in answers} == {1}  # the champion answers every request
        quality = "/v1/models/nordic-langid/feedback"
        wait_until(
            lambda: http.get(quality).json()["shadow"]["compared"] == len(texts), 30, "shadow requests"
        )
        shadow = http.get(quality).json()["shadow"]
        metrics = http.get("/metrics").text
    assert server.terminate() == 0

    normalized = [normalize(t) for t in texts]
    one, two = load_predictor(langid.v1), load_predictor(langid.v2)
    offline = np.argmax(one.predict_proba(normalized), 1) == np.argmax(two.predict_proba(normalized), 1)
    print(
        f"\nshadow agreement {shadow['agreement']:.4f} = offline {offline.mean():.4f} "
        f"over {len(texts)} inputs"
    )
    assert shadow["agreed"] == int(offline.sum())
    assert f'miniml_shadow_agreement{{model="nordic-langid"}} {shadow["agreement"]}' in metrics
    assert 'miniml_rollout_latency_seconds_count{model="nordic-langid",role="challenger"}' in metrics
