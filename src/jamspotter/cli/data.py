"""`jamspotter data ...` commands."""

from __future__ import annotations

from jamspotter.cli.app import data_app  # noqa: F401  (commands are added below)
