"""Plain library exceptions for input a user can fix; the CLI turns them into one `error:` line and exit 2."""

from __future__ import annotations


class JamspotterError(Exception):
    """Bad input (file, line, field) the user can fix; never a bug in jamspotter itself."""

    exit_code = 2

    def format_message(self) -> str:
        """The message on one line, so scripts and people can read it."""
        return " ".join(str(self).split())


class DataError(JamspotterError):
    """A data file or record is malformed; the message names the file and entry."""


class OutputError(JamspotterError):
    """An output path that would destroy or mix with data the command did not write."""


def where(path: object, entry: object | None = None) -> str:
    """Format `file` or `file:entry` for error messages."""
    return f"{path}" if entry is None else f"{path}:{entry}"
