"""The baseline ``generate_serve_compare.py`` measures ``miniml serve`` against, in its own process.

A FastAPI app whose handler runs a text2text generation per request, as the seed text2sql service did
(``POST /generate {"text", "max_new_tokens"?}`` → ``{"generated_text"}``, a plain ``def`` handler run in
FastAPI's thread pool). transformers 5 removed the ``text2text-generation`` pipeline task, so the handler
does exactly what that pipeline did for one input: tokenize, ``model.generate`` (greedy,
``max_new_tokens``), decode without special tokens. The model folder is read with ``transformers``
directly (config.json, tokenizer, weights).

    python bench/generate_baseline.py MODEL_FOLDER PORT --max-new-tokens 64
"""

import argparse
from pathlib import Path
from typing import Any


def serve(folder: Path, port: int, max_new_tokens: int, max_input_tokens: int) -> None:
    import torch
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(folder)).eval()
    app = FastAPI()

    class Prompt(BaseModel):
        text: str
        max_new_tokens: int | None = None

    def text2text(text: str, new_tokens: int) -> str:
        """What ``pipeline("text2text-generation")(text, max_new_tokens=...)`` did in transformers 4."""
        inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_input_tokens)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, num_beams=1)
        return str(tokenizer.decode(output[0], skip_special_tokens=True, clean_up_tokenization_spaces=False))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/generate")
    def generate(prompt: Prompt) -> dict[str, Any]:
        return {"generated_text": text2text(prompt.text, prompt.max_new_tokens or max_new_tokens)}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--max-input-tokens", type=int, default=512)
    args = parser.parse_args()
    serve(args.folder, args.port, args.max_new_tokens, args.max_input_tokens)


if __name__ == "__main__":
    main()
