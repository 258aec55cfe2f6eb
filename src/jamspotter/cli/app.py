"""The Typer app and its command groups; command modules register onto these objects.

Kept thin: commands parse arguments and call library functions. Heavy imports (torch,
transformers) happen inside commands so `jamspotter --help` stays fast. Library errors
(`JamspotterError`) and bad options become one `error:` line on stderr and exit code 2, here and nowhere else.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from jamspotter.errors import JamspotterError


class _Group(TyperGroup):
    """A command group that reports `JamspotterError` as one line and exit code 2 instead of a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except JamspotterError as e:
            print("error: " + e.format_message(), file=sys.stderr)
            raise typer.Exit(e.exit_code) from None
        except Exception as e:
            if not _is_usage_error(e):
                raise
            where = f"{e.ctx.command_path}: " if getattr(e, "ctx", None) is not None else ""
            print(f"error: {where}{' '.join(e.format_message().split())} (see --help)", file=sys.stderr)
            raise typer.Exit(2) from None


def _is_usage_error(e: Exception) -> bool:
    """A bad option or argument (click's UsageError, whichever click Typer runs on); not the help shown for no args."""
    names = {k.__name__ for k in type(e).__mro__}
    return "UsageError" in names and "NoArgsIsHelpError" not in names


_opts: dict[str, Any] = {"no_args_is_help": True, "rich_markup_mode": None, "pretty_exceptions_enable": False,
                         "cls": _Group}

app = typer.Typer(help="Find jam-causing material on recycling conveyor belts with Qwen-VL models.", **_opts)
data_app = typer.Typer(help="Import, export, synthesise, validate, split and augment datasets.", **_opts)
train_app = typer.Typer(help="Supervised and reinforcement fine-tuning.", **_opts)
eval_app = typer.Typer(help="Detection, classification and trajectory metrics with reports.", **_opts)
edge_app = typer.Typer(help="The fast edge CNN: train, export to ONNX, predict.", **_opts)
line_app = typer.Typer(help="Run a detector over a belt stream; simulate the line (digital twin).", **_opts)


@app.callback()
def _main() -> None:
    """Find jam-causing material on recycling conveyor belts with Qwen-VL models."""
    from jamspotter.progress import quiet_library_bars

    quiet_library_bars()  # off a terminal (CI logs, pipes) a tqdm bar is a wall of carriage returns


app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(edge_app, name="edge")
app.add_typer(line_app, name="line")
