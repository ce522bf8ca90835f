"""The `lab` command line: a thin typer app with one module per command group."""

from __future__ import annotations

import sys

import typer
import typer.exceptions

from lab.cli.root import app
from lab.errors import LabError


def _register() -> None:
    """Attach every command group; each module adds its own commands to `app` (lab.cli.root)."""
    from lab.cli import fleet  # noqa: F401
    from lab.cli import check, db  # noqa: F401
    from lab.cli import analyze, parse  # noqa: F401
    from lab.cli import campaign, nodes  # noqa: F401
    from lab.cli import report  # noqa: F401
    from lab.cli import serve  # noqa: F401
    from lab.cli import power  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app behind the one error boundary of the CLI."""
    _register()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        result = app(args=argv, standalone_mode=False, prog_name="lab")
    except LabError as exc:
        if debug:
            raise
        print(f"lab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.exceptions.TyperException as exc:
        # typer carries its own click: usage errors (bad option, missing argument) are TyperExceptions.
        exc.show() if hasattr(exc, "show") else print(f"lab: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except typer.Abort:
        print("lab: aborted", file=sys.stderr)
        return 1
    # With standalone_mode=False, click returns (not raises) the code of a `typer.Exit(code)`.
    return result if type(result) is int else 0


def run() -> None:
    """Console-script wrapper that exits with main()'s status."""
    sys.exit(main())
