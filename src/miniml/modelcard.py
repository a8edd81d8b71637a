"""The model card: ``README.md`` in every model folder, in the Hugging Face format.

A card is a pure function of the folder's ``miniml.json`` (:func:`render_card`), so it never disagrees
with the facts the folder carries, and :func:`miniml.modelfolder.write_info` writes it next to every
``miniml.json`` it writes: training and ``miniml optimize`` (every task) get it without asking, and the
folder's manifest covers it like any other file. YAML front matter (``license``, ``datasets``,
``base_model``, ``metrics``, ``pipeline_tag``, ``tags``, ``model-index`` with the test results) is
produced by ``huggingface_hub.ModelCardData``, so the Hub and its tools read it; the Markdown body says
what the model does, its data (fingerprint, sources, licenses, rows per label, what each label was
trained on), test metrics with a per-class table, lineage, intended use and known limits.

The facts come from ``miniml.json``: ``dataset`` holds what training recorded about the dataset (see
:func:`miniml.data.facts.dataset_facts`); a folder written before that still gets a card, with less in it.

What a card says about the task (what the model does, how to use it, its intended use and limits, whether
plain ``transformers`` loads it) comes from the task: every one of :mod:`miniml.tasks` has a
:class:`CardText` (its ``card``), which the task table registers here with :func:`register_card_text`;
a task the table does not know (a plugin not loaded) gets the facts-only :data:`GENERIC`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miniml.io import atomic_write_text

if TYPE_CHECKING:
    from miniml.modelfolder import ModelInfo

CARD_FILE = "README.md"
# the packaged offline checkpoints, by their miniml name → the Hub id they are copies of
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}
# license text in the data catalog → Hugging Face license id (the first license a source names)
_LICENSES = [
    (r"CC0[ -]1\.0", "cc0-1.0"),
    (r"CC[ -]BY[ -]NC[ -]SA[ -](\d\.\d)", "cc-by-nc-sa-{}"),
    (r"CC[ -]BY[ -]NC[ -](\d\.\d)", "cc-by-nc-{}"),
    (r"CC[ -]BY[ -]SA[ -](\d\.\d)", "cc-by-sa-{}"),
    (r"CC[ -]BY[ -](\d\.\d)", "cc-by-{}"),
    (r"\bMIT\b", "mit"),
    (r"Apache[ -]2\.0", "apache-2.0"),
    (r"BSD[ -]3[ -]Clause", "bsd-3-clause"),
    (r"BSD[ -]2[ -]Clause", "bsd-2-clause"),
]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_SOURCES = 25
SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}


def _no_lines(info: ModelInfo) -> list[str]:
    return []


def _never(info: ModelInfo) -> bool:
    return False


def _plain_architecture(info: ModelInfo) -> str:
    return f"`{info.architecture}`"


def _generic_use(info: ModelInfo, like: str) -> list[str]:
    return [f"Inputs like those it was trained on: {like}."]


@dataclass(frozen=True)
class CardText:
    """What a task says in its models' cards; each hook gets the folder's ``ModelInfo``.

    ``intended_use`` also gets a phrase naming the training data (``texts like those of the `x` dataset``).
    """

    words: str | None = None  # the summary's first words ("Text classification"); None: the task's name
    pipeline_tag: str | None = None  # the Hub's pipeline tag
    what_it_does: Callable[[ModelInfo], list[str]] = _no_lines
    architecture: Callable[[ModelInfo], str] = _plain_architecture
    how_to_use: Callable[[ModelInfo], list[str]] = _no_lines
    intended_use: Callable[[ModelInfo, str], list[str]] = _generic_use
    known_limits: Callable[[ModelInfo], list[str]] = _no_lines
    loads_in_transformers: Callable[[ModelInfo], bool] = _never  # with the same outputs miniml gives


GENERIC = CardText()
_TEXTS: dict[str, CardText] = {}


def register_card_text(task: str, text: CardText) -> None:
    """Use ``text`` for the cards of ``task``'s models (the task table calls this for every task)."""
    _TEXTS[task] = text


def card_text(task: str) -> CardText:
    """The card text of ``task``; :data:`GENERIC` for a task that registered none."""
    return _TEXTS.get(task, GENERIC)


def write_card(folder: Path, info: ModelInfo) -> Path:
    """Write ``README.md`` (the card of ``info``) into ``folder``, atomically; returns its path."""
    path = Path(folder) / CARD_FILE
    atomic_write_text(path, render_card(info))
    return path


def render_card(info: ModelInfo) -> str:
    """The whole card: YAML front matter, then the Markdown body.

    Rendered from ``info`` as ``miniml.json`` stores it (keys sorted), so the card rendered at write time
    and one rendered later from the file are the same text."""
    info = type(info).model_validate_json(json.dumps(info.model_dump(mode="json"), sort_keys=True))
    sections = [
        f"# {info.name}",
        _summary(info),
        _section("What it does", _what_it_does(info)),
        _section("How to use it", _how_to_use(info)),
        _section("Training data", _training_data(info)),
        _section("Evaluation", _evaluation(info)),
        _section("Lineage", _lineage(info)),
        _section("Intended use", _intended_use(info)),
        _section("Known limits", _known_limits(info)),
    ]
    body = "\n\n".join(s for s in sections if s)
    return f"---\n{front_matter(info)}\n---\n\n{body}\n"


def front_matter(info: ModelInfo) -> str:
    """The card's metadata as YAML, through ``huggingface_hub.ModelCardData`` (the Hub's own schema)."""
    from huggingface_hub import EvalResult, ModelCardData

    text = card_text(info.task)
    dataset = info.dataset or {}
    license_id, license_name = card_license(source_licenses(info))
    metrics = test_metrics(info)
    results = [
        EvalResult(
            task_type=text.pipeline_tag or info.task,
            dataset_type=str(dataset.get("name", "unknown")),
            dataset_name=_dataset_ref(dataset),
            dataset_split=str(dataset.get("split", "test")),
            metric_type=_HEADLINE[name],
            metric_name=name,
            metric_value=round(float(value), 6),
        )
        for name, value in metrics.items()
        if name in _HEADLINE
    ]
    data = ModelCardData(
        model_name=info.name,
        license=license_id,
        license_name=license_name,
        datasets=[str(dataset["name"])] if dataset.get("name") else None,
        base_model=hub_base_model(info.base_model),
        metrics=sorted({_HEADLINE[m] for m in metrics if m in _HEADLINE}) or None,
        pipeline_tag=text.pipeline_tag,
        library_name="transformers" if text.loads_in_transformers(info) else None,
        tags=_tags(info),
        eval_results=results or None,
    )
    return str(data.to_yaml())


# metrics that go into the front matter (model-index), with their Hub metric id
_HEADLINE = {
    "accuracy": "accuracy",
    "macro_f1": "f1",
    "weighted_f1": "f1",
    "exact_match": "exact_match",
    "token_f1": "f1",
    "rougeL": "rouge",
    "perplexity": "perplexity",
}


def _tags(info: ModelInfo) -> list[str]:
    tags = ["miniml", info.task, info.architecture, info.runtime]
    steps = [str(s.get("step")) for s in info.lineage.get("steps", []) if isinstance(s, dict)]
    tags += [s for s in steps if s in ("int8", "prune")]
    return list(dict.fromkeys(t for t in tags if t))


def hub_base_model(base: str | None) -> str | None:
    """The base model as a Hub id, or None when it is a local folder or a built-from-scratch model."""
    if not base:
        return None
    base = HUB_IDS.get(base, base)
    return base if _HUB_ID.match(base) and not Path(base).exists() else None


def source_licenses(info: ModelInfo) -> list[str]:
    """The distinct license texts of the training data's sources, in order of appearance."""
    sources = (info.dataset or {}).get("sources") or []
    return list(dict.fromkeys(str(s["license"]) for s in sources if s.get("license")))


def license_id(text: str) -> str | None:
    """The Hugging Face license id of a catalog license text (the first license it names), if known."""
    for pattern, template in _LICENSES:
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match:
            return template.format(*match.groups())
    return None


def card_license(texts: Sequence[str]) -> tuple[str | None, str | None]:
    """(license, license_name) for the front matter: the data's one license, or ``other`` when mixed."""
    ids = {license_id(t) for t in texts}
    if not texts:
        return None, None
    if len(ids) == 1 and None not in ids:
        return ids.pop(), None
    return "other", "mixed-training-data-licenses"


def test_metrics(info: ModelInfo) -> dict[str, float]:
    """The folder's test metrics under plain names (optimized folders prefix them with the split)."""
    split = str((info.dataset or {}).get("split", "test"))
    out: dict[str, float] = {}
    for name, value in info.metrics.items():
        plain = name[len(split) + 1 :] if name.startswith(f"{split}_") else name
        out[plain] = float(value)
    return out


# ---------------------------------------------------------------- body sections


def _section(title: str, lines: Iterable[str]) -> str:
    text = "\n".join(lines).strip()
    return f"## {title}\n\n{text}" if text else ""


def _summary(info: ModelInfo) -> str:
    made = f"written by miniml {info.miniml_version}" if info.miniml_version else "written by miniml"
    return (
        f"{card_text(info.task).words or info.task} model `{info.name}` ({info.architecture}, "
        f"{info.runtime} runtime), created {info.created_at}. This card is {made} from the folder's "
        "`miniml.json`; `miniml models card` prints it."
    )


def _what_it_does(info: ModelInfo) -> list[str]:
    text = card_text(info.task)
    lines = [*text.what_it_does(info), "", f"- Architecture: {text.architecture(info)}"]
    if info.base_model:
        hub = hub_base_model(info.base_model)
        shown = f"`{info.base_model}`" + (f" (`{hub}`)" if hub and hub != info.base_model else "")
        lines.append(f"- Base model: {shown}")
    pre = info.preprocessing or {}
    if pre.get("kind"):
        extra = ", ".join(f"{k} {v}" for k, v in pre.items() if k != "kind" and _scalar(v))
        lines.append(f"- Preprocessing: {pre['kind']}" + (f" ({extra})" if extra else ""))
    if info.logit_temperature != 1.0:
        lines.append(
            f"- Scores are calibrated: logits are divided by {info.logit_temperature:.4g} before the "
            "softmax (temperature fitted on the validation split)."
        )
    quant = getattr(info, "quantization", None)
    if isinstance(quant, dict) and quant:
        lines.append(f"- Weights are quantized when miniml loads them: {pairs(quant)}.")
    return lines


def _how_to_use(info: ModelInfo) -> list[str]:
    return [
        "```",
        "miniml serve MODEL_FOLDER_OR_URI           # HTTP API with batching, cache, keys, metrics",
        "miniml predict MODEL --input in.jsonl --output out.jsonl",
        "```",
        *card_text(info.task).how_to_use(info),
    ]


def _training_data(info: ModelInfo) -> list[str]:
    data = info.dataset or {}
    if not data.get("name"):
        return ["No dataset is recorded for this model."]
    lines = [f"Dataset `{data['name']}`, fingerprint `{data.get('fingerprint', '?')}`."]
    if data.get("uri"):
        lines[-1] += f" Pulled from the dataset hub: `{data['uri']}`."
    rows = data.get("rows") or {}
    if rows:
        ordered = sorted(rows.items(), key=lambda kv: SPLIT_ORDER.get(kv[0], len(SPLIT_ORDER)))
        lines.append("Rows: " + ", ".join(f"{split} {n:,}" for split, n in ordered) + ".")
    lines += _label_table(data.get("label_counts") or {})
    lines += _composition(data.get("composition") or {})
    lines += _sources(data.get("sources") or [])
    return lines


def _label_table(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    if not counts:
        return []
    splits = sorted(counts, key=lambda s: SPLIT_ORDER.get(s, len(SPLIT_ORDER)))
    labels = sorted({label for c in counts.values() for label in c})
    lines = ["", "| label | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for label in labels:
        cells = " | ".join(f"{counts[s].get(label, 0):,}" for s in splits)
        lines.append(f"| {label} | {cells} |")
    return lines


def _composition(comp: Mapping[str, Mapping[str, Mapping[str, int]]]) -> list[str]:
    """What each label's training rows held, by extra column (e.g. the source language of ``other``)."""
    lines = []
    for column, by_label in comp.items():
        lines += ["", f"Training rows by `{column}`:", ""]
        for label, values in by_label.items():
            who = "all rows" if label == "*" else f"`{label}`"
            lines.append(f"- {who}: " + ", ".join(f"{v} {n:,}" for v, n in by_count(values)))
    return lines


def _sources(sources: Sequence[Mapping[str, Any]]) -> list[str]:
    if not sources:
        return []
    lines = ["", "| source | license | rows |", "|---|---|---:|"]
    for s in sources[:MAX_SOURCES]:
        rows = f"{s['rows']:,}" if isinstance(s.get("rows"), int) else ""
        lines.append(f"| {_source_link(str(s.get('uri', '')))} | {_cell(s.get('license') or '?')} | {rows} |")
    if len(sources) > MAX_SOURCES:
        lines.append(f"| … and {len(sources) - MAX_SOURCES} more (see the dataset's manifest.json) | | |")
    licenses = [f"{t} → `{license_id(t) or 'unknown'}`" for t in dict.fromkeys(_license_texts(sources))]
    if licenses:
        lines += ["", "Licenses of the training data: " + "; ".join(licenses) + "."]
    return lines


def _license_texts(sources: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(s["license"]) for s in sources if s.get("license")]


def _evaluation(info: ModelInfo) -> list[str]:
    metrics = test_metrics(info)
    if not metrics:
        return ["No test metrics are recorded."]
    data = info.dataset or {}
    where = f"the `{data.get('split', 'test')}` split of `{_dataset_ref(data)}`"
    lines = [f"Measured on {where} when this folder was written.", ""]
    overall = {k: v for k, v in metrics.items() if "/" not in k}
    lines += ["| metric | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in overall.items()]
    lines += _per_class(info, metrics)
    by_length = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("accuracy/words_")}
    if by_length:
        lines += ["", "Accuracy by input length: " + ", ".join(f"{k} {v:.3f}" for k, v in by_length.items())]
    return lines


def _per_class(info: ModelInfo, metrics: Mapping[str, float]) -> list[str]:
    labels = [x for x in info.labels if any(f"{m}/{x}" in metrics for m in ("precision", "recall", "f1"))]
    if not labels:
        return []
    support = ((info.dataset or {}).get("label_counts") or {}).get(str(info.dataset.get("split", "test")), {})
    lines = ["", "| label | precision | recall | F1 | test rows |", "|---|---:|---:|---:|---:|"]
    for label in labels:
        cells = " | ".join(_num(metrics.get(f"{m}/{label}")) for m in ("precision", "recall", "f1"))
        rows = support.get(label)
        lines.append(f"| {label} | {cells} | {f'{rows:,}' if rows is not None else ''} |")
    return lines


def _lineage(info: ModelInfo) -> list[str]:
    lineage = info.lineage or {}
    lines = []
    parent = lineage.get("parent")
    if isinstance(parent, dict):
        ref = parent.get("uri") or parent.get("path")
        version = f" (version {parent['version']})" if parent.get("version") is not None else ""
        lines.append(f"- Optimized from `{ref}`{version}.")
    for step in lineage.get("steps") or []:
        if isinstance(step, dict):
            facts = pairs({k: v for k, v in step.items() if k != "step"})
            lines.append(f"- Step `{step.get('step')}`" + (f": {facts}" if facts else ""))
    parity = lineage.get("parity")
    if isinstance(parity, dict) and parity:
        lines.append(f"- Parity with the parent: {pairs(parity)}")
    earlier = lineage.get("parent_lineage") or lineage
    if earlier.get("run_id"):
        lines.append(f"- Trained in MLflow run `{earlier['run_id']}`.")
    scaling = earlier.get("temperature_scaling")
    if isinstance(scaling, dict):
        lines.append(f"- Temperature scaling on validation: {pairs(scaling)}")
    if isinstance(lineage.get("lora"), dict):
        lines.append(f"- LoRA: {pairs(lineage['lora'])}")
    return lines


def _intended_use(info: ModelInfo) -> list[str]:
    data = (info.dataset or {}).get("name")
    like = f"texts like those of the `{data}` dataset (see Training data)" if data else "texts like its data"
    return card_text(info.task).intended_use(info, like)


def _known_limits(info: ModelInfo) -> list[str]:
    lines = card_text(info.task).known_limits(info)
    pre = info.preprocessing or {}
    for key in ("max_length", "max_input_tokens"):
        if isinstance(pre.get(key), int):
            lines.append(f"- Inputs longer than {pre[key]} tokens are cut to that length.")
    parity = (info.lineage or {}).get("parity")
    if isinstance(parity, dict) and parity.get("final_max_abs_diff"):
        lines.append(
            f"- This optimized version's outputs differ from its parent's by up to "
            f"{float(parity['final_max_abs_diff']):.2g} on the test texts."
        )
    lines.append("- Test metrics come from one held-out split; other domains may score lower.")
    return lines


# ---------------------------------------------------------------- formatting


def _dataset_ref(data: Mapping[str, Any]) -> str:
    name, fp = data.get("name"), data.get("fingerprint")
    return f"{name}/{fp}" if name and fp else str(name or "unknown")


def by_count(values: Mapping[str, int]) -> list[tuple[str, int]]:
    """Most frequent first (ties by name), the summed-up rest ``(other)`` last."""
    return sorted(values.items(), key=lambda kv: (kv[0] == "(other)", -kv[1], kv[0]))


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(str(value)) <= 80


def pairs(mapping: Mapping[str, Any]) -> str:
    parts = []
    for key, value in mapping.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif _scalar(value):
            parts.append(f"{key} {value}")
        elif isinstance(value, list) and all(_scalar(v) for v in value) and len(value) <= 8:
            parts.append(f"{key} {', '.join(map(str, value))}")
    return ", ".join(parts)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _source_link(uri: str) -> str:
    """A source as a Markdown link named by its file (URLs), or the path as code (local files)."""
    name = _cell(uri.rstrip("/").rsplit("/", 1)[-1] or uri)
    if uri.startswith(("https://", "http://")):
        return f"[{name}]({uri.replace(')', '%29').replace(' ', '%20')})"
    return f"`{name}`"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
