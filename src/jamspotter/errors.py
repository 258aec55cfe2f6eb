"""One error type for bad user input: the CLI prints it as one line and exits with code 2."""

from __future__ import annotations

import sys

try:  # Typer >= 0.29 runs commands with its own vendored click; its runner catches only that class.
    from typer._click.exceptions import ClickException
except ImportError:  # older Typer uses click itself
    from click import ClickException


class JamspotterError(ClickException):
    """Bad input (file, line, field) the user can fix; never a bug in jamspotter itself."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        """Print exactly one line, so scripts and people can read it."""
        print("error: " + " ".join(self.format_message().split()), file=file or sys.stderr)


class DataError(JamspotterError):
    """A data file or record is malformed; the message names the file and entry."""


def where(path: object, entry: object | None = None) -> str:
    """Format `file` or `file:entry` for error messages."""
    return f"{path}" if entry is None else f"{path}:{entry}"
