"""Following `models:/NAME@ALIAS`: when the alias moves, the new version is loaded and swapped in under load
with zero failed requests, and the cache never answers from the old version afterwards."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from serve_support import ServerProcess, train_toy_model, wait_until

PROBE = {"inputs": ["hej med dig hvordan går det"], "top_k": 3}


class Load:
    """Clients posting in a loop on their own keep-alive connections, recording status and version."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.results: list[tuple[int, object]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(clients)]

    def client(self, i: int) -> None:
        with httpx.Client(timeout=30) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                r = http.post(self.url, json={"inputs": [f"jag bor i stockholm {i} {n}", "eg veit ikkje"]})
                self.results.append((r.status_code, r.json().get("version")))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def test_alias_move_swaps_versions_under_load_without_errors(toy_model: Path, tmp_path: Path) -> None:
    from miniml.registry.store import register_model, set_alias

    two_labels = train_toy_model(tmp_path / "home2", ("da", "sv"), seed=2)
    assert register_model("toy", toy_model).version == 1
    assert register_model("toy", two_labels).version == 2
    set_alias("toy", 1, "champion")

    server = ServerProcess(["models:/toy@champion", "--set", "alias_poll_s=0.3"], tmp_path).wait_ready()
    url = f"{server.url}/v1/models/toy/predict"
    before = httpx.post(url, json=PROBE).json()  # now cached under version 1
    assert before["version"] == 1 and len(before["predictions"][0]["top_k"]) == 3

    with Load(url, clients=6) as load:
        time.sleep(1.0)
        set_alias("toy", 2, "champion")
        wait_until(lambda: any(v == 2 for _, v in load.results[-20:]), 60, "version 2 answering")
        time.sleep(1.0)
    statuses = {s for s, _ in load.results}
    versions = [v for _, v in load.results]
    assert statuses == {200}, f"failed requests during the swap: {statuses}"
    assert set(versions) == {1, 2} and len(versions) > 50
    assert versions[-1] == 2

    after = httpx.post(url, json=PROBE).json()  # same input: must not come from version 1's cache entry
    assert after["version"] == 2
    assert {t["label"] for t in after["predictions"][0]["top_k"]} == {"da", "sv"}
    models = httpx.get(f"{server.url}/v1/models").json()["models"]
    assert [(m["name"], m["version"], m["alias"], m["labels"]) for m in models] == [
        ("toy", 2, "champion", ["da", "sv"])
    ]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'miniml_model_swaps_total{model="toy"} 1.0' in metrics
    assert 'miniml_model_version{model="toy"} 2.0' in metrics
    assert server.terminate() == 0
