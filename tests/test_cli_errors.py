"""Bad options are one `error:` line and exit 2, like every other user error (not click's three-line usage)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from jamspotter.cli import app


@pytest.mark.parametrize("args, expected", [
    (["line", "run", "--frames", "0", "--source", "synth", "--out", "o"], "--frames"),
    (["data", "synth", "--bogus"], "No such option: --bogus"),
    (["eval", "detection", "--pred", "p.jsonl"], "Missing option '--gt'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_usage_errors_are_one_line(args: list[str], expected: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, args)
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.output
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_group_without_a_command_still_shows_its_help() -> None:
    r = CliRunner().invoke(app, ["data"])
    assert "Commands:" in r.output and "error:" not in r.output
