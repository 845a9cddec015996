"""The Typer application object and helpers shared by the stage commands."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer

from nfkit import __version__
from nfkit.errors import REPORTED_ERRORS, UserError

app = typer.Typer(
    name="nfkit",
    help=(
        "Deep learning on the weights of Neural Radiance Fields.\n\n"
        "Stages exchange versioned HDF5 artifacts on disk: synth -> fit-nerfs -> "
        "build-graphs -> ... Run `nfkit COMMAND --help` for the options of each stage."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nfkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the nfkit version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
    workspace: Path | None = typer.Option(
        None, "--workspace", "-w",
        help="Workspace folder whose nerfs/, graphs/, views/, ... are every stage's default inputs and "
        "outputs (default: $NFKIT_WORKSPACE, else the current folder). Layout: data_specs/workspace.md.",
        show_default=False,
    ),
) -> None:
    from nfkit.workspace import set_workspace

    set_workspace(workspace)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return an Exit(1) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


F = TypeVar("F", bound=Callable)


def user_errors(func: F) -> F:
    """Turn the library's user errors (:data:`nfkit.errors.REPORTED_ERRORS`: ``NfkitError`` and
    file errors naming a path) into a one-line message and exit code 1. Anything else is a bug
    and keeps its traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except REPORTED_ERRORS as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise fail(msg) from None
        except KeyboardInterrupt:
            raise fail("interrupted; completed outputs are kept, rerun to resume") from None

    return wrapper  # type: ignore[return-value]


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; validates ``cuda[:N]``. Under torchrun
    with several processes per machine, ``cuda`` (or ``auto`` on a GPU machine) becomes
    ``cuda:<LOCAL_RANK>``: one GPU per process."""
    import torch

    from nfkit.distributed import device_for_rank

    name = name.strip().lower()
    if name == "auto":
        return device_for_rank("cuda") if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA device is available on this machine")
        return device_for_rank(name)
    raise UserError(f"--device {name!r}: expected auto, cpu or cuda[:N]")


def resolve_preset(preset: str, device: str) -> str:
    """``auto`` -> ``paper`` on a CUDA device, ``cpu`` otherwise; other names lower-cased."""
    name = preset.strip().lower()
    if name == "auto":
        return "paper" if device.startswith("cuda") else "cpu"
    return name
