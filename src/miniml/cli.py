"""The ``miniml`` command line: dispatch only.

Each command parses its arguments, loads one validated config and calls a library function. Failures caused
by input or environment are ``MinimlError``: printed as one ``error: ...`` line, exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer._click import exceptions as click_exceptions  # typer vendors click

from miniml.errors import MinimlError

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


@app.command()
def version() -> None:
    """Print the miniml version and where it keeps its files (MINIML_HOME)."""
    from miniml import __version__, paths

    typer.echo(f"miniml {__version__} (home: {paths.home()})")


# ---------------------------------------------------------------- data (issue 2)
data_app = typer.Typer(help="Fetch catalog datasets and prepare versioned datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# ---------------------------------------------------------------- train / evaluate / predict (issue 3)

# ---------------------------------------------------------------- models registry (issue 3)

# ---------------------------------------------------------------- serve (issue 4)

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
    dataset: Annotated[str | None, typer.Option("--dataset", help="Dataset to compare quality on.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Register even if quality dropped too much.")
    ] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML optimize config.")] = None,
    overrides: SetOption = None,
) -> None:
    """Optimize a model (ONNX, int8, pruning), compare it with its parent and register it as a new version."""
    from miniml.optimize.cli import run_optimize

    flags = {"onnx": onnx, "int8": int8, "prune": prune, "calibration": calibration, "dataset": dataset}
    run_optimize(model_uri, config, overrides or [], flags, force=force)


# ---------------------------------------------------------------- pipeline


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
