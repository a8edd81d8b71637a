"""The ``miniml`` command line: dispatch only.

Each command parses its arguments, loads one validated config and calls a library function. Failures caused
by input or environment are ``MinimlError``: printed as one ``error: ...`` line, exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click import exceptions as click_exceptions  # typer vendors click

from miniml.errors import ConfigError, MinimlError

app = typer.Typer(
    name="miniml",
    help="From raw text data to a fast, secure, monitored model API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set key.subkey=value (repeatable)."),
]
ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
BackendOption = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="Where the work runs: local (this process) or ray (a Ray cluster; the backend: section, "
        "e.g. --set backend.workers=2) [default: the config's backend.type, else local].",
    ),
]


@app.command()
def version() -> None:
    """Print the miniml version and where it keeps its files (MINIML_HOME)."""
    import miniml.paths as paths
    from miniml.version import __version__

    typer.echo(f"miniml {__version__} (home: {paths.home()})")


# ---------------------------------------------------------------- data (issue 2)
data_app = typer.Typer(help="Fetch catalog datasets and prepare versioned datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
MirrorOption = Annotated[
    str | None,
    typer.Option(
        "--mirror",
        help="Folder or http(s) URL replacing https:// in catalog URLs [default: $MINIML_DATA_MIRROR].",
    ),
]


@data_app.command("fetch")
def data_fetch(
    name: Annotated[
        str, typer.Argument(help="Catalog dataset name (e.g. nordic-langid).", show_default=False)
    ],
    mirror: MirrorOption = None,
) -> None:
    """Download a catalog dataset into the sha256-verified cache (skips files already cached)."""
    from miniml.data.catalog import dataset_files
    from miniml.data.fetch import fetch_files

    results = fetch_files(dataset_files(name), mirror=mirror)
    for r in results:
        typer.echo(f"{'fetched' if r.transferred else 'cached '}  {r.file.name}  {r.path}")
    fresh = sum(r.transferred for r in results)
    size = sum(r.file.bytes for r in results) / 1e6
    typer.echo(
        f"{name}: {len(results)} files, {size:.1f} MB verified "
        f"({fresh} fetched, {len(results) - fresh} already cached)"
    )


@data_app.command("prepare")
def data_prepare(
    config: ConfigArg, set_: SetOption = None, mirror: MirrorOption = None, backend: BackendOption = None
) -> None:
    """Build a versioned dataset from CONFIG.yaml; prints its path, fingerprint and counts."""
    import time

    from miniml.backends import get_backend
    from miniml.compute import backend_overrides
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, plan
    from miniml.data.report import print_summary

    start = time.perf_counter()
    flags = backend_overrides(backend)
    prepare_config = load_config(PrepareConfig, config, set_ or [], base_dir_key="base_dir", flags=flags)
    the_plan = plan(prepare_config)
    existed = the_plan.exists
    dataset = get_backend(prepare_config.backend).prepare(the_plan, mirror=mirror)
    print_summary(dataset)
    took = time.perf_counter() - start
    typer.echo("already prepared (same fingerprint; not rebuilt)" if existed else f"prepared in {took:.1f} s")


@data_app.command("show")
def data_show(
    dataset: Annotated[
        str, typer.Argument(help="Dataset folder, NAME or NAME/FINGERPRINT.", show_default=False)
    ],
) -> None:
    """Summarize a prepared dataset: path, fingerprint, counts per split and label, drops, sources."""
    from miniml.data.dataset import open_dataset
    from miniml.data.report import print_summary

    print_summary(open_dataset(dataset), sources=True)


HubArg = Annotated[str, typer.Argument(help="The dataset hub: s3://BUCKET/PREFIX.", show_default=False)]
EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        help="S3-compatible endpoint [default: $MLFLOW_S3_ENDPOINT_URL, else $AWS_ENDPOINT_URL, else AWS].",
    ),
]
ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="AWS profile for credentials [default: $AWS_PROFILE].")
]


@data_app.command("push")
def data_push(
    dataset: Annotated[
        str, typer.Argument(help="Dataset folder, NAME or NAME/FINGERPRINT.", show_default=False)
    ],
    remote: HubArg,
    endpoint_url: EndpointOption = None,
    profile: ProfileOption = None,
) -> None:
    """Upload a prepared dataset to the hub (content-addressed: a second push uploads nothing)."""
    from miniml.data.dataset import open_dataset
    from miniml.data.hub import push
    from miniml.data.report import transfer_line

    done = push(open_dataset(dataset).path, remote, endpoint=endpoint_url, profile=profile)
    typer.echo(transfer_line(done, pushed=True))


@data_app.command("pull")
def data_pull(
    dataset: Annotated[
        str,
        typer.Argument(
            help="NAME (newest), NAME/FINGERPRINT, or s3://BUCKET/PREFIX/NAME/FINGERPRINT.",
            show_default=False,
        ),
    ],
    remote: Annotated[
        str | None, typer.Argument(help="The dataset hub: s3://BUCKET/PREFIX.", show_default=False)
    ] = None,
    endpoint_url: EndpointOption = None,
    profile: ProfileOption = None,
) -> None:
    """Download a dataset from the hub; every file's sha256 is checked before it appears locally."""
    from miniml.data.hub import pull
    from miniml.data.report import transfer_line

    done = pull(dataset, remote, endpoint=endpoint_url, profile=profile)
    typer.echo(transfer_line(done, pushed=False))


@data_app.command("list")
def data_list(
    remote: Annotated[
        str | None, typer.Option("--remote", help="List the hub at s3://BUCKET/PREFIX instead.")
    ] = None,
    endpoint_url: EndpointOption = None,
    profile: ProfileOption = None,
) -> None:
    """List the datasets of this MINIML_HOME, or of the hub with --remote."""
    from miniml.data.dataset import list_datasets
    from miniml.data.hub import list_remote
    from miniml.data.report import local_table, remote_table

    if remote is None:
        _console().print(local_table(list_datasets()))
        return
    found = list_remote(remote, endpoint=endpoint_url, profile=profile)
    _console().print(remote_table(found, remote))


# ---------------------------------------------------------------- train / evaluate / predict (issue 3)
ModelArg = Annotated[
    str,
    typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder.", show_default=False),
]


# the test figures ``miniml train`` prints, when the task reports them
TEST_FIGURES = (
    "accuracy",
    "macro_f1",
    "exact_match",
    "token_f1",
    "rougeL",
    "perplexity",
    "recall_at_1",
    "mrr",
)


def log_progress_off_terminal() -> None:
    """Off a terminal (CI, nohup, a pipe) the progress bar is silent: print its log lines instead."""
    import logging
    import sys

    if sys.stderr.isatty():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("miniml.train")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@app.command("train")
def train_cmd(
    config: ConfigArg,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue the interrupted run of this config from its last checkpoint."
        ),
    ] = False,
    set_: SetOption = None,
    backend: BackendOption = None,
) -> None:
    """Train a model from CONFIG.yaml, evaluate it on the test split and register it."""
    from transformers.utils import logging as hf_logging

    from miniml.backends import get_backend
    from miniml.compute import backend_overrides
    from miniml.train.config import load_train_config

    hf_logging.set_verbosity_error()  # the progress bar and the summary below say what matters
    hf_logging.disable_progress_bar()  # e.g. "Writing model shards" at every checkpoint
    log_progress_off_terminal()
    train_config = load_train_config(config, set_ or [], flags=backend_overrides(backend))
    result = get_backend(train_config.backend).train(train_config, resume=resume)
    version = f"version {result.model_version}" if result.model_version is not None else "not registered"
    figures = " · ".join(f"{k} {result.metrics[k]:.4f}" for k in TEST_FIGURES if k in result.metrics)
    typer.echo(f"trained {result.model_name}: {version} (MLflow run {result.run_id})")
    typer.echo(f"test: {figures}")
    typer.echo(f"model folder: {result.model_folder}")
    if result.report_dir is not None:
        typer.echo(f"report: {result.report_dir / 'report.md'}")
    typer.echo("browse runs: miniml ui")


@app.command("evaluate")
def evaluate_cmd(
    model: ModelArg,
    dataset: Annotated[
        str, typer.Argument(help="Dataset folder, NAME or NAME/FINGERPRINT.", show_default=False)
    ],
    split: Annotated[str, typer.Option("--split", help="Split to score.")] = "test",
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the report and plots.")] = None,
    no_constraint: Annotated[
        bool, typer.Option("--no-constraint", help="Generative models: ignore the model's saved constraint.")
    ] = False,
) -> None:
    """Score a model on a dataset split: metrics JSON on stdout, report + plots as files."""
    import json

    from miniml.evaluate import evaluate_model

    result = evaluate_model(model, dataset, split, out_dir=out, constrained=not no_constraint)
    typer.echo(json.dumps(result.metrics, indent=2, sort_keys=True))
    typer.echo(f"report: {result.report_dir / 'report.md'}", err=True)


@app.command("predict")
def predict_cmd(
    model: ModelArg,
    input_path: Annotated[
        Path,
        typer.Option("--input", help='JSONL, one {"text": ...} per line; or Parquet with a text column.'),
    ],
    output_path: Annotated[Path, typer.Option("--output", help="JSONL file to write (replaced atomically).")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=65536)] = 256,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="Keep only the k best scores.")] = None,
    backend: BackendOption = None,
    set_: SetOption = None,
) -> None:
    """Batch prediction: the model's answer for every input (label, score, top-k ...), in input order."""
    from miniml.backends import get_backend
    from miniml.compute import backend_overrides
    from miniml.config import load_config
    from miniml.evaluate.predict import PredictConfig

    settings = load_config(PredictConfig, None, set_ or [], flags=backend_overrides(backend))
    runner = get_backend(settings.backend)
    count = runner.predict(model, input_path, output_path, batch_size=batch_size, top_k=top_k)
    typer.echo(f"wrote {count} predictions to {output_path}", err=True)


# ---------------------------------------------------------------- models registry (issue 3)
models_app = typer.Typer(
    help="List, inspect, alias and promote registered model versions.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _console() -> Any:
    """A rich console; wide when piped so tables are not squeezed into 80 columns."""
    from rich.console import Console

    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _print_json(obj: object) -> None:
    import json

    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False))


@models_app.command("list")
def models_list(as_json: JsonOption = False) -> None:
    """List registered models: latest version, aliases, task and key metric."""
    from miniml.registry import store, views

    models = store.list_models()
    if as_json:
        _print_json([views.summary_dict(m) for m in models])
    elif not models:
        typer.echo("no registered models yet (`miniml train CONFIG.yaml` registers one)")
    else:
        _console().print(views.models_table(models))


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Registered model name.")], as_json: JsonOption = False
) -> None:
    """Show every version of a model: aliases, metrics, dataset fingerprint, run id, created."""
    from miniml.registry import store, views

    versions = store.list_versions(name)
    if as_json:
        _print_json([views.version_dict(v) for v in versions])
    else:
        _console().print(views.versions_table(name, versions))


@models_app.command("alias")
def models_alias(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[int, typer.Argument(help="Version number.", min=1)],
    alias: Annotated[str, typer.Argument(help="Alias to point at it, e.g. challenger.")],
) -> None:
    """Point ALIAS at VERSION of NAME (no gate; use `promote` for champion)."""
    from miniml.registry import store

    mv = store.set_alias(name, version, alias)
    typer.echo(f"models:/{name}@{alias} → v{mv.version}")


@models_app.command("unalias")
def models_unalias(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to remove.")],
) -> None:
    """Remove ALIAS from NAME."""
    from miniml.registry import store

    store.delete_alias(name, alias)
    typer.echo(f"removed models:/{name}@{alias}")


@models_app.command("import")
def models_import(
    reference: Annotated[
        str,
        typer.Argument(
            help="Checkpoint: minilm, a Hugging Face folder or id, or a classifier (models:/NAME@ALIAS).",
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Registered model name.", show_default=False)],
    task: Annotated[str, typer.Option("--task", help="Task of the new model.")] = "embedding",
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Score its test split (NAME, NAME/FP or a folder).")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Register a checkpoint as a model version without training (e.g. the untrained baseline)."""
    from miniml.config import parse_overrides
    from miniml.train.imports import import_model

    settings = {**parse_overrides(set_ or []), "name_or_path": reference}
    result = import_model(name, task, settings, dataset=dataset)
    typer.echo(f"imported {result.model_name}: version {result.model_version} (MLflow run {result.run_id})")
    if result.metrics:
        typer.echo("test: " + " · ".join(f"{k} {v:.4f}" for k, v in sorted(result.metrics.items())))
    typer.echo(f"model folder: {result.model_folder}")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[int, typer.Argument(help="Candidate version.", min=1)],
    force: Annotated[bool, typer.Option("--force", help="Move the alias even if the gate refuses.")] = False,
    metric: Annotated[str | None, typer.Option(help="Test metric to compare [default: macro_f1].")] = None,
    margin: Annotated[float | None, typer.Option(help="How much better it must be [default: 0].")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias to move [default: champion].")] = None,
    online: Annotated[
        bool, typer.Option("--online", help="Gate on served feedback (online accuracy) instead.")
    ] = False,
    min_feedback: Annotated[
        int, typer.Option("--min-feedback", min=1, help="--online: labelled answers the candidate needs.")
    ] = 100,
    feedback: Annotated[
        Path | None,
        typer.Option("--feedback", help="--online: feedback log [default: MINIML_HOME/feedback/NAME.jsonl]."),
    ] = None,
) -> None:
    """Move the champion alias to VERSION if it beats the champion on the same test split (or, with
    --online, on live feedback)."""
    from miniml.evaluate import score_of
    from miniml.registry import promote, views

    if online:
        from miniml.monitor.gate import promote_online

        result = promote_online(
            name,
            version,
            alias=alias or "champion",
            margin=margin or 0.0,
            min_feedback=min_feedback,
            log=feedback,
            force=force,
        )
        message = views.promotion_message(result)
        if not result.promoted:
            typer.echo(f"error: {message}; {result.reason}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{message}")
        return
    given = {"metric": metric, "margin": margin, "alias": alias}
    gate = promote.gate_config(name, [f"{k}={v}" for k, v in given.items() if v is not None])
    result = promote.promote(
        name,
        version,
        alias=gate.alias,
        metric=gate.metric,
        margin=gate.margin,
        force=force,
        evaluate=score_of,
    )
    message = views.promotion_message(result)
    if not result.promoted:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)
    typer.echo(message)


@models_app.command("card")
def models_card(
    model: Annotated[
        str,
        typer.Argument(
            help="NAME@ALIAS, NAME/VERSION, NAME (latest), models:/... or a model folder.", show_default=False
        ),
    ],
) -> None:
    """Print a model's card (README.md: Hugging Face front matter, data, metrics, lineage, limits)."""
    import miniml.tasks  # noqa: F401  the task table registers what each task's cards say
    from miniml.registry.cards import model_card

    typer.echo(model_card(model), nl=False)


# ---------------------------------------------------------------- model monitoring (issue 18)
monitor_app = typer.Typer(help="Reference profiles and drift reports of served models.", no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")


def _monitored_model(model: str) -> Any:
    """Load ``model`` for ``miniml monitor``: a task that model monitoring covers (``Task.monitored``)."""
    from miniml.errors import ModelError
    from miniml.tasks import get_task, load_model

    loaded = load_model(model)
    if not get_task(loaded.task).monitored:
        raise ModelError(
            f"{model} is a {loaded.task} model; drift profiles and reports cover classifiers",
            hint="pass a classification model",
        )
    return loaded


@monitor_app.command("profile")
def monitor_profile(
    model: ModelArg,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Dataset to profile on [default: the model's own].")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write [default: where the server looks].")
    ] = None,
) -> None:
    """Write the reference profile (reference.json) of a model trained before profiles existed."""
    from miniml.monitor.build import profile_version

    loaded = _monitored_model(model)
    profile, path = profile_version(loaded.predictor, loaded.path, loaded.version, dataset=dataset, out=out)
    typer.echo(f"reference profile of {profile.model} ({profile.train_rows} training rows): {path}")


@monitor_app.command("report")
def monitor_report(
    model: ModelArg,
    input_path: Annotated[Path, typer.Option("--input", help='Traffic: JSONL, one {"text": ...} per line.')],
    out: Annotated[
        Path | None, typer.Option("--out", help="Report folder [default: MINIML_HOME/reports/...].")
    ] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when drift is found.")
    ] = False,
) -> None:
    """Compare traffic with the model's reference profile: report.html (plots) + summary.json (pass/fail)."""
    import time

    from miniml.errors import ModelError
    from miniml.monitor.profile import find_profile, read_profile
    from miniml.monitor.report import drift_report, read_texts
    from miniml.paths import home

    loaded = _monitored_model(model)
    predictor, name = loaded.predictor, loaded.info.name
    found = find_profile(loaded.path, name, loaded.version)
    if found is None:
        raise ModelError(
            f"{model} has no reference profile", hint=f"run `miniml monitor profile {model}` first"
        )
    texts = read_texts(input_path)
    folder = out or home() / "reports" / name / f"drift-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = drift_report(predictor, read_profile(found), texts, folder)
    for signal, s in summary.signals.items():
        mark = "DRIFT" if s.drift_detected else "pass"
        typer.echo(f"{signal:<11} {s.statistic:<12} {s.value:8.4f}  threshold {s.threshold:g}  {mark}")
    verdict = "drift detected" if summary.drift_detected else "no drift"
    typer.echo(f"{verdict} over {summary.inputs} inputs; report: {folder / 'report.html'}")
    if fail_on_drift and summary.drift_detected:
        raise typer.Exit(1)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 for every one).")] = "127.0.0.1",
) -> None:
    """Start the MLflow UI on miniml's tracking store (embedded by default)."""
    from miniml.registry.ui import run_ui

    code = run_ui(host, port)
    if code:
        raise typer.Exit(code)


# ---------------------------------------------------------------- serve (issue 4)
KeysFileOption = Annotated[Path, typer.Option("--file", "-f", help="Keys file (YAML, or JSON by suffix).")]
RedisOption = Annotated[
    str | None,
    typer.Option(
        "--redis",
        help="Also publish the keys file to this Redis (redis://...), for servers with auth.keys_redis.",
    ),
]
RedisPrefixOption = Annotated[str, typer.Option("--redis-prefix", help="Redis key of the shared keys.")]


SERVE_ACTIONS = ("status", "stop")


@app.command()
def serve(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            help="Model URIs: models:/NAME@ALIAS, models:/NAME/VERSION or a model folder; or `status` / "
            "`stop` (--backend ray: the Serve application on the cluster).",
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="serve.yaml")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    set_: SetOption = None,
    demo_key: Annotated[
        bool, typer.Option("--demo-key", help="Create a key for this run, print it and a curl line.")
    ] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="local (this process) or ray (Ray Serve replicas; the backend: section, e.g. --set "
            "backend.replicas=2) [default: the config's backend.type, else local].",
        ),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="--backend ray: deploy onto a running cluster and return.")
    ] = False,
) -> None:
    """Serve models over HTTP: batching, cache, API keys, rate limits, metrics (see /docs)."""
    from miniml.serve.server import load_settings, run

    action = models[0] if models and len(models) == 1 and models[0] in SERVE_ACTIONS else None
    settings = load_settings(
        config,
        models=() if action else models or (),
        host=host,
        port=port,
        overrides=set_ or (),
        backend="ray" if action else backend,
    )
    if settings.backend.type == "ray":
        from miniml.backends.ray import serving

        if action == "status":
            typer.echo("\n".join(serving.serve_status(settings)))
        elif action == "stop":
            typer.echo(serving.serve_stop(settings))
        else:
            serving.run_on_ray(settings, detach=detach, demo_key=demo_key)
        return
    if detach:
        raise ConfigError("--detach needs --backend ray (the local server runs in the foreground)")
    run(settings, demo_key=demo_key)


keys_app = typer.Typer(
    help="Create, list and revoke API keys (the file stores only hashes).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Key name (shown in logs and metrics).")],
    file: KeysFileOption,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Allowed model (repeatable); default: all.")
    ] = None,
    requests: Annotated[str | None, typer.Option(help="Request budget, e.g. 100/second.")] = None,
    chars: Annotated[str | None, typer.Option(help="Input-character budget, e.g. 1000000/minute.")] = None,
    tokens: Annotated[
        str | None, typer.Option(help="Generation token budget (prompt + generated), e.g. 100000/minute.")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May send feedback on any key's requests.")] = False,
    redis: RedisOption = None,
    redis_prefix: RedisPrefixOption = "miniml:keys",
) -> None:
    """Create a key: prints it once; only its sha256 is written to the keys file."""
    from miniml.serve.auth import add_key

    _check_redis_url(redis)
    key = add_key(
        file, name, models=model or ["*"], requests=requests, chars=chars, tokens=tokens, admin=admin
    )
    typer.echo(key)
    typer.echo(
        f"stored the hash of key {name!r} in {file}; the key is not shown again "
        "(servers using this file accept it within auth.reload_s, default 2 s)",
        err=True,
    )
    _publish_keys(file, redis, redis_prefix)


@keys_app.command("list")
def keys_list(file: KeysFileOption) -> None:
    """List key names, allowed models and budgets (never the keys)."""
    from miniml.serve.auth import read_keys_file

    for r in read_keys_file(file):
        named = (("requests", r.requests), ("chars", r.chars), ("tokens", r.tokens))
        budgets = ", ".join(f"{k}={v}" for k, v in named if v)
        typer.echo(f"{r.name}\tmodels={','.join(r.models)}\t{budgets}" + ("\tadmin" if r.admin else ""))


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="Key name.")],
    file: KeysFileOption,
    redis: RedisOption = None,
    redis_prefix: RedisPrefixOption = "miniml:keys",
) -> None:
    """Remove a key from the keys file; servers using the file refuse it within auth.reload_s (2 s)."""
    from miniml.serve.auth import revoke_key

    _check_redis_url(redis)
    revoke_key(file, name)
    typer.echo(f"revoked key {name!r} in {file}")
    typer.echo(
        "servers using this file refuse it within auth.reload_s (default 2 s); "
        "`kill -HUP PID` makes one re-read the file at once",
        err=True,
    )
    _publish_keys(file, redis, redis_prefix)


@keys_app.command("publish")
def keys_publish(
    file: KeysFileOption,
    redis: Annotated[str, typer.Option("--redis", help="Redis to publish to (redis://...).")],
    redis_prefix: RedisPrefixOption = "miniml:keys",
) -> None:
    """Copy the keys file's records (hashes only) to Redis: servers with auth.keys_redis follow them."""
    _check_redis_url(redis)
    _publish_keys(file, redis, redis_prefix)


def _check_redis_url(url: str | None) -> None:
    if url is not None and not url.startswith(("redis://", "rediss://")):
        raise ConfigError("--redis must be a redis:// or rediss:// URL (e.g. redis://127.0.0.1:6379/0)")


def _publish_keys(file: Path, url: str | None, prefix: str) -> None:
    """Publish the keys file to Redis when ``url`` is given."""
    if url is None:
        return
    from miniml.serve.auth import read_keys_file
    from miniml.serve.sharedkeys import publish_keys, redact

    records = read_keys_file(file)
    version = publish_keys(url, records, prefix=prefix)
    typer.echo(
        f"published {len(records)} key(s) to {redact(url)} {prefix} (version {version}); servers with "
        "auth.keys_redis follow it within auth.reload_s (default 2 s)",
        err=True,
    )


# ---------------------------------------------------------------- optimize (issue 6)


@app.command()
def optimize(
    model_uri: Annotated[
        str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder.")
    ],
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Export to ONNX (served through onnxruntime).")
    ] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="int8 quantization (dynamic; static with --calibration).")
    ] = False,
    prune: Annotated[
        float | None, typer.Option("--prune", help="Prune this fraction of weights, 0 < p < 1.")
    ] = None,
    calibration: Annotated[
        str | None,
        typer.Option("--calibration", help="Dataset whose validation split calibrates static int8."),
    ] = None,
    finetune_steps: Annotated[
        int | None,
        typer.Option("--finetune-steps", help="Fine-tune this many steps after pruning (masks kept)."),
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Dataset to compare quality on.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Register even if quality dropped too much.")
    ] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML optimize config.")] = None,
    overrides: SetOption = None,
) -> None:
    """Optimize a model (ONNX, int8, pruning), compare it with its parent and register it as a new version."""
    from miniml.config import load_config
    from miniml.optimize import OptimizeConfig, optimize_model
    from miniml.optimize.config import flag_overrides

    flags = {
        "onnx": onnx,
        "int8": int8,
        "prune": prune,
        "calibration": calibration,
        "finetune_steps": finetune_steps,
        "dataset": dataset,
    }
    cfg = load_config(OptimizeConfig, config, [*(overrides or []), *flag_overrides(flags, force)])
    print_optimized(optimize_model(model_uri, cfg))


def print_optimized(result: Any) -> None:
    """The outcome of ``miniml optimize`` in three or four lines."""
    from miniml.optimize.report import quality_metric

    r, report = result.report["ratios"], result.report
    metric, parity = quality_metric(report), report["parity"]
    close = (
        f"identical outputs {parity['identical_outputs']:.0%}"
        if "identical_outputs" in parity
        else f"max |dp| {parity['final_max_abs_diff']:.2e}"
    )
    typer.echo(f"optimized model: {result.folder}")
    typer.echo(
        f"size {r['size'] or 0:.2f}x smaller, batch-1 p50 {r.get('latency_p50_b1') or 0:.2f}x faster, "
        f"{metric} {report['parent']['quality'][metric]:.4f} -> "
        f"{report['optimized']['quality'][metric]:.4f}, {close}"
    )
    typer.echo(f"report: {result.folder / 'optimize_report.md'}")
    if result.version is not None:
        typer.echo(f"registered: {result.uri}")


# ---------------------------------------------------------------- pipeline
pipeline_app = typer.Typer(
    help="Run data → train → optimize → evaluate → gate → serve from one YAML file.", no_args_is_help=True
)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("run")
def pipeline_run(
    config: ConfigArg,
    set_: SetOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted train step from its last checkpoint.")
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Ignore the recorded state: run every step again.")
    ] = False,
    serve_: Annotated[
        bool, typer.Option("--serve", help="End by serving (the pipeline's serve step) in the foreground.")
    ] = False,
    mirror: MirrorOption = None,
    backend: BackendOption = None,
) -> None:
    """Run a pipeline; steps already done with the same config are skipped (--set train.epochs=1 ...)."""
    from transformers.utils import logging as hf_logging

    from miniml.pipeline.config import load_pipeline
    from miniml.pipeline.run import run_pipeline

    hf_logging.set_verbosity_error()  # the step lines say what matters
    hf_logging.disable_progress_bar()
    flags = [f"backend.type={backend}"] if backend else []
    pipeline = load_pipeline(config, [*(set_ or []), *flags])
    run_pipeline(pipeline, resume=resume, fresh=fresh, mirror=mirror, serve=serve_)  # prints its outcome


# ---------------------------------------------------------------- jobs on a Ray cluster (issue 13)
job_app = typer.Typer(
    help="Run a train, predict or pipeline config on a Ray cluster as a Ray Job.", no_args_is_help=True
)
app.add_typer(job_app, name="job")
JobIdArg = Annotated[str, typer.Argument(help="The job's id (printed by `miniml job submit`).")]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="The head's Jobs API, http://HEAD:8265 [default: $RAY_API_SERVER_ADDRESS, else "
        "http://127.0.0.1:8265].",
    ),
]
FollowOption = Annotated[
    bool, typer.Option("--follow", "-f", help="Stream the job's output; exit with its exit status.")
]


@job_app.command("submit")
def job_submit(
    config: ConfigArg,
    address: AddressOption = None,
    follow: FollowOption = False,
    set_: SetOption = None,
    backend: BackendOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Pass --resume to train / pipeline run.")] = False,
    working_dir: Annotated[
        Path | None,
        typer.Option("--working-dir", help="Folder sent with the job [default: the config's folder]."),
    ] = None,
    python: Annotated[str, typer.Option("--python", help="The cluster's Python with miniml.")] = "python",
) -> None:
    """Submit CONFIG.yaml (train, predict or pipeline run) to a Ray cluster; prints the job id."""
    from miniml.backends.ray import jobs

    spec = jobs.JobSpec(config, tuple(set_ or []), backend, resume, working_dir, python)
    _validate_job(spec)
    client = jobs.connect(address)
    job_id = jobs.submit(client, spec)
    typer.echo(f"submitted job {job_id}: {spec.entrypoint()}")
    if not follow:
        where = f"--address {client.get_address()}"
        typer.echo(f"follow it: miniml job logs {job_id} --follow {where}", err=True)
        return
    _job_outcome(client, jobs.follow(client, job_id, _write))


def _validate_job(spec: Any) -> None:
    """Load the config through its own schema here, so a typo fails before anything is submitted."""
    from miniml.compute import backend_overrides
    from miniml.pipeline.config import load_pipeline
    from miniml.train.config import load_train_config

    if spec.kind == "train":
        load_train_config(spec.config, spec.overrides, flags=backend_overrides(spec.backend))
    elif spec.kind == "pipeline":
        flags = [f"backend.type={spec.backend}"] if spec.backend else []
        load_pipeline(spec.config, [*spec.overrides, *flags])
    else:
        spec.predict_config()


def _write(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()


def _job_outcome(client: Any, state: Any) -> None:
    """End the command as the job ended: exit 0, or its error line and exit status."""
    from miniml.backends.ray import jobs

    if state.status == "SUCCEEDED":
        typer.echo(f"job {state.id} succeeded", err=True)
    elif state.done:
        raise jobs.failure(state, jobs.job_logs(client, state.id))
    else:
        typer.echo(f"job {state.id} is still {state.status}", err=True)


@job_app.command("status")
def job_status(job_id: JobIdArg, address: AddressOption = None) -> None:
    """Print a job's status; exit 1 when it failed or was stopped."""
    from miniml.backends.ray import jobs

    client = jobs.connect(address)
    state = jobs.job_state(client, job_id)
    typer.echo(f"{state.id}: {state.status} · {state.entrypoint}")
    if state.done and state.status != "SUCCEEDED":
        typer.echo(f"error: {jobs.failure(state, jobs.job_logs(client, job_id))}", err=True)
        raise typer.Exit(1)


@job_app.command("logs")
def job_logs_cmd(job_id: JobIdArg, address: AddressOption = None, follow: FollowOption = False) -> None:
    """Print a job's output (--follow: until it ends, then exit with its exit status)."""
    from miniml.backends.ray import jobs

    client = jobs.connect(address)
    if follow:
        _job_outcome(client, jobs.follow(client, job_id, _write))
    else:
        _write(jobs.job_logs(client, job_id))


@job_app.command("stop")
def job_stop(job_id: JobIdArg, address: AddressOption = None) -> None:
    """Stop a running job (its workers stop with it)."""
    from miniml.backends.ray import jobs

    state, stopped = jobs.stop(jobs.connect(address), job_id)
    verb = "stopped" if stopped else "not running"
    typer.echo(f"{state.id}: {verb} ({state.status})")


@job_app.command("list")
def job_list(address: AddressOption = None) -> None:
    """The jobs submitted to the cluster: id, status, start (UTC), command."""
    from miniml.backends.ray import jobs

    for row in jobs.describe(jobs.list_jobs(jobs.connect(address))):
        typer.echo("  ".join(row))


# ---------------------------------------------------------------- hub (issue 19)
hub_app = typer.Typer(
    help="The team hub: an MLflow tracking server with PostgreSQL and an S3 artifact store.",
    no_args_is_help=True,
)
app.add_typer(hub_app, name="hub")


@hub_app.command("up")
def hub_up(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="hub.yaml")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.", min=1, max=65535)] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (0.0.0.0 to serve the team).")] = None,
    set_: SetOption = None,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Run the server in this process (compose, systemd).")
    ] = False,
) -> None:
    """Start the hub in the background; prints the MLFLOW_TRACKING_URI to export."""
    from miniml.hub import load_hub_config, up

    flags = [f"{k}={v}" for k, v in (("port", port), ("host", host)) if v is not None]
    state = up(load_hub_config(config, [*(set_ or []), *flags]), foreground=foreground)
    typer.echo(f"hub running at {state.url} (pid {state.pid}; log {state.log})")
    typer.echo(f"backend store {state.backend_store}; artifacts {state.artifacts_destination}")
    typer.echo(f"export MLFLOW_TRACKING_URI={state.url}   # or: source {Path(state.log).parent / 'env'}")


@hub_app.command("down")
def hub_down() -> None:
    """Stop the hub started from this MINIML_HOME."""
    from miniml.hub import down

    state = down()
    typer.echo(f"stopped the hub at {state.url} (pid {state.pid})" if state else "no hub is running")


@hub_app.command("status")
def hub_status() -> None:
    """Say whether the hub runs and answers; exit 1 when it does not."""
    from miniml.hub import status

    state, healthy = status()
    if state is None:
        typer.echo("hub: not running (start it with `miniml hub up --config hub.yaml`)")
        raise typer.Exit(1)
    word = "running" if healthy else "NOT answering"
    typer.echo(f"hub: {word} at {state.url} (pid {state.pid}, since {state.started_at})")
    typer.echo(f"backend store {state.backend_store}; artifacts {state.artifacts_destination}")
    typer.echo(f"log: {state.log}")
    if not healthy:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and turn every known failure into one line + non-zero exit."""
    try:
        result = app(args=argv, prog_name="miniml", standalone_mode=False)
    except MinimlError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except click_exceptions.NoArgsIsHelpError as err:
        typer.echo(err.ctx.get_help() if err.ctx else str(err))
        sys.exit(0)
    except click_exceptions.ClickException as err:
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {err.format_message()}{hint}", err=True)
        sys.exit(err.exit_code)
    except typer.Exit as ex:
        sys.exit(ex.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # a bug: still one line unless asked for the traceback
        if os.environ.get("MINIML_DEBUG"):
            raise
        typer.echo(
            f"error: internal error {type(err).__name__}: {err} (set MINIML_DEBUG=1 for a traceback)",
            err=True,
        )
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
