"""The two servers ``serve_compare.py`` measures miniml against, each in its own process.

- ``fastapi``: the seed systems' approach — a FastAPI app whose handler calls a ``transformers``
  text-classification pipeline once per request (a plain ``def`` handler, so FastAPI runs it in its thread
  pool, as the seeds did).
- ``litserve``: LitServe with its own dynamic batching (``max_batch_size``, ``batch_timeout``), the
  ``LitAPI`` hooks running the same model and tokenizer.

Both load the miniml model folder with ``transformers`` directly (config.json, tokenizer, safetensors):
with ``pooling: cls`` it is a plain ``AutoModelForSequenceClassification`` folder; with ``pooling: mean``
(the reviews recipe) the same weights go into the small ``PreTrainedModel`` subclass of
``mean_pool_class``, what a user of the seeds' approach would write for a custom head. Both answer
``POST /predict {"text": ...}`` with label + score, and expose ``GET /health``.

    python bench/serve_baselines.py fastapi MODEL_FOLDER PORT
    python bench/serve_baselines.py litserve MODEL_FOLDER PORT --max-batch-size 32 --batch-timeout 0.005
"""

import argparse
from pathlib import Path
from typing import Any


def load_model(folder: Path) -> Any:
    """The folder's classifier as a ``transformers`` model (mean pooling: ``MeanPoolForClassification``)."""
    import json

    from transformers import AutoModelForSequenceClassification

    pooling = json.loads((folder / "builder.json").read_text()).get("pooling", "cls")
    if pooling == "cls":
        return AutoModelForSequenceClassification.from_pretrained(folder).eval()
    from safetensors.torch import load_file
    from transformers import AutoConfig

    model = mean_pool_class()(AutoConfig.from_pretrained(folder))
    model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    return model.eval()


def mean_pool_class() -> Any:
    """A Hugging Face model class for miniml's ``pooling: mean`` head (encoder → masked mean → linear)."""
    import torch
    from transformers import AutoModel, PreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPoolForClassification(PreTrainedModel):
        base_model_prefix = "encoder"

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.encoder = AutoModel.from_config(config)
            self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None, **_: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return SequenceClassifierOutput(logits=self.classifier(pooled))

    return MeanPoolForClassification


def fastapi_pipeline(folder: Path, port: int, max_length: int) -> None:
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline

    classifier = pipeline(
        "text-classification", model=load_model(folder), tokenizer=str(folder), device="cpu"
    )
    app = FastAPI()

    class Review(BaseModel):
        text: str

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(review: Review) -> dict[str, Any]:
        result = classifier(review.text, truncation=True, max_length=max_length)[0]
        return {"label": result["label"], "score": result["score"]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def litserve_batched(
    folder: Path, port: int, max_length: int, max_batch_size: int, batch_timeout: float
) -> None:
    import litserve as ls

    api = ClassifierAPI(str(folder), max_length, max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, healthcheck_path="/health")
    server.run(
        host="127.0.0.1", port=port, log_level="warning", generate_client_file=False, num_api_servers=1
    )


try:  # LitServe pickles the API into its worker process: the class must live at module level
    from litserve import LitAPI as _LitAPI
except ImportError:  # the fastapi baseline runs without the bench extra
    _LitAPI = object  # type: ignore[assignment,misc]


class ClassifierAPI(_LitAPI):  # type: ignore[misc,valid-type]
    """LitServe's hooks for the classifier: decode → batch → predict → unbatch → encode."""

    def __init__(self, folder: str, max_length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.folder = folder
        self.max_length = max_length

    def setup(self, device: str) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.model = load_model(Path(self.folder))
        self.labels = self.model.config.id2label

    def decode_request(self, request: dict[str, Any]) -> str:
        return str(request["text"])

    def predict(self, texts: list[str]) -> Any:
        import torch

        enc = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        with torch.inference_mode():
            return self.model(**enc).logits.softmax(-1)  # (B, C)

    def unbatch(self, output: Any) -> list[Any]:
        return list(output)

    def encode_response(self, probs: Any) -> dict[str, Any]:
        i = int(probs.argmax())
        return {"label": self.labels[i], "score": float(probs[i])}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["fastapi", "litserve"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.005)
    args = parser.parse_args()
    if args.kind == "fastapi":
        fastapi_pipeline(args.folder, args.port, args.max_length)
    else:
        litserve_batched(args.folder, args.port, args.max_length, args.max_batch_size, args.batch_timeout)


if __name__ == "__main__":
    main()
