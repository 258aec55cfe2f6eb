"""Every `bash` block of README.md runs as written, in order, in an empty folder, on data made with `data synth`.

The set-up block (`make demo`, `make test`) is skipped: it is what runs this test. `jamspotter ...` lines
run in-process through Typer's CliRunner (importing torch and transformers once, not per command);
`echo '...' | jamspotter ...` feeds the echoed text on stdin; any other line runs in bash with the
virtual environment's `bin` first on PATH. Blocks marked `text` are not run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

README = Path(__file__).resolve().parents[1] / "README.md"
SETUP_BLOCK = [["make", "demo"], ["make", "test"]]  # the set-up block, as shell words
_BLOCK_RE = re.compile(r"^```bash[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_OPERATOR_CHARS = set("();<>|&")


def bash_blocks(text: str) -> list[str]:
    """The bodies of the ```bash fenced blocks, in order."""
    return [m.group(1) for m in _BLOCK_RE.finditer(text)]


def block_commands(block: str) -> list[str]:
    """Logical command lines of a block: `\\` continuations joined, blank and comment-only lines dropped."""
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        text = line.rstrip()
        if text.endswith("\\") and not text.lstrip().startswith("#"):
            pending += text[:-1] + " "
            continue
        pending += text
        if pending.strip() and not pending.lstrip().startswith("#"):
            commands.append(pending.strip())
        pending = ""
    if pending.strip():
        commands.append(pending.strip())
    return commands


def words(command: str) -> list[str]:
    """Shell words of a command, comments removed; operators (`|`, `>`, `&&`, ...) come out as their own words."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def is_operator(word: str) -> bool:
    return bool(word) and set(word) <= _OPERATOR_CHARS


@dataclass
class Invocation:
    """How one README command is run: in-process (`args`, optional `stdin`) or by bash (`shell`)."""

    command: str
    args: list[str] | None = None
    stdin: str | None = None
    shell: bool = False


def plan(command: str) -> Invocation:
    """In-process for `jamspotter ARGS` and `echo TEXT | jamspotter ARGS`; bash for anything else."""
    w = words(command)
    ops = [x for x in w if is_operator(x)]
    if w and w[0] == "jamspotter" and not ops:
        return Invocation(command, args=w[1:])
    if len(w) > 4 and w[0] == "echo" and w[2] == "|" and w[3] == "jamspotter" and ops == ["|"]:
        return Invocation(command, args=w[4:], stdin=w[1] + "\n")
    return Invocation(command, shell=True)


def readme_commands() -> list[str]:
    """Every command of the README's bash blocks except the set-up block, in order."""
    blocks = [block_commands(b) for b in bash_blocks(README.read_text(encoding="utf-8"))]
    return [c for b in blocks if [words(c) for c in b] != SETUP_BLOCK for c in b]


# ---- the parser, checked against hand-written expectations ---------------------------------------

def test_block_commands_join_continuations_and_drop_comments():
    block = ("# a comment line\n"
             "jamspotter data stats belt/    # trailing comment\n"
             "\n"
             "jamspotter line run --source synth \\\n"
             "  --out run/        # comment after the continuation\n"
             "echo '```json [1, 2] ```' \\\n"
             "  | jamspotter parse --family qwen3-vl --image-size 10 20\n")
    cmds = block_commands(block)
    assert cmds == ["jamspotter data stats belt/    # trailing comment",
                    "jamspotter line run --source synth    --out run/        # comment after the continuation",
                    "echo '```json [1, 2] ```'    | jamspotter parse --family qwen3-vl --image-size 10 20"]
    assert plan(cmds[0]).args == ["data", "stats", "belt/"]
    assert plan(cmds[1]).args == ["line", "run", "--source", "synth", "--out", "run/"]
    piped = plan(cmds[2])
    assert piped.args == ["parse", "--family", "qwen3-vl", "--image-size", "10", "20"]
    assert piped.stdin == "```json [1, 2] ```\n"
    assert plan("jamspotter train k8s --out x > job.yaml").shell
    assert plan("ls belt/").shell


def test_bash_blocks_find_only_bash_fences():
    text = "```bash\na\n```\n\n```text\nb\n```\n```\nc\n```\n```bash\nd \\\n e\n```\n"
    assert [block_commands(b) for b in bash_blocks(text)] == [["a"], ["d   e"]]


# ---- the README itself -----------------------------------------------------------------------------

def test_readme_starts_with_the_setup_block_and_sends_nobody_outside_the_repository():
    text = README.read_text(encoding="utf-8")
    blocks = bash_blocks(text)
    assert blocks and [words(c) for c in block_commands(blocks[0])] == SETUP_BLOCK
    assert "../shared" not in text
    assert len(readme_commands()) >= 20  # the tour is really there to run


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path, monkeypatch):
    from jamspotter.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JAMSPOTTER_REFERENCE_DATA", raising=False)  # a reader who cloned the repository
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "jamspotter").exists() and shutil.which("jamspotter"):
        bin_dir = Path(shutil.which("jamspotter")).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    runner = CliRunner()
    timings: list[str] = []
    for command in readme_commands():
        how = plan(command)
        start = time.monotonic()
        if how.shell:
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=600)
            code, output, error = done.returncode, done.stdout + done.stderr, None
        else:
            result = runner.invoke(app, how.args, input=how.stdin)
            code, output, error = result.exit_code, result.output, result.exception
        timings.append(f"{time.monotonic() - start:6.1f} s  {command}")
        if code != 0:
            detail = "" if error is None or isinstance(error, SystemExit) else f"\nexception: {error!r}"
            tail = "\n".join(output.splitlines()[-25:])
            pytest.fail(f"README command failed with exit code {code}:\n  {command}\n--- output (tail) ---\n"
                        f"{tail}{detail}\n--- earlier commands ---\n" + "\n".join(timings[:-1]), pytrace=False)
    print("\n".join(timings))
