"""`jamspotter` command line: one Typer app; each module in COMMAND_MODULES registers its commands."""

from __future__ import annotations

import importlib

from jamspotter.cli.app import app

# Each module adds commands to the groups in `jamspotter.cli.app` when imported.
COMMAND_MODULES: tuple[str, ...] = (
    "jamspotter.cli.data",
    "jamspotter.cli.train",
    "jamspotter.cli.synth",
    "jamspotter.cli.eval",
    "jamspotter.cli.formats",
    "jamspotter.cli.line",
    "jamspotter.cli.edge",
    "jamspotter.cli.infer",
    "jamspotter.cli.ask",
    "jamspotter.cli.edge_detector",
    "jamspotter.cli.demo",
    "jamspotter.cli.serve",
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name)


def main() -> None:
    """Console entry point."""
    app()


__all__ = ["app", "main"]
