"""The ``corrtrack`` command line.

Each command group lives in its own module here with a ``register(app)``
function; heavy imports (torch, OpenCV) happen inside the command functions so
that ``corrtrack --help`` and ``corrtrack eval`` start fast and never need torch.
"""
from __future__ import annotations

import importlib
import sys

import typer

from corrtrack.errors import CorrtrackError
from corrtrack.openmp import set_openmp_defaults

app = typer.Typer(
    name="corrtrack",
    help="Multi-person pose estimation and tracking with self-supervised keypoint correspondences.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Modules of corrtrack.cli that define commands; each has register(app).
COMMAND_MODULES = ("version", "eval", "models", "detect", "track", "train", "data", "pose", "bench")


@app.callback()
def _root() -> None:
    """Multi-person pose estimation and tracking with self-supervised keypoint correspondences."""


@app.command("version")
def version() -> None:
    """Print the corrtrack version."""
    from corrtrack import __version__

    typer.echo(__version__)


for _name in COMMAND_MODULES:
    if _name != "version":
        importlib.import_module(f"corrtrack.cli.{_name}").register(app)


def main() -> None:
    """Entry point: expected failures become one line on stderr and exit code != 0."""
    set_openmp_defaults()  # a short spin of torch's threads; before torch is imported (corrtrack.openmp)
    try:
        app()
    except CorrtrackError as e:
        print(f"corrtrack: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
