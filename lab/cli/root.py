"""The `lab` typer app itself: each command module adds its commands to `app`, lab.cli runs it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="lab",
    help="Hailo fleet test lab: provision nodes, run scenarios, report whether degradation reproduces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error.")) -> None:
    """Hailo fleet test lab."""
    _state["debug"] = debug
