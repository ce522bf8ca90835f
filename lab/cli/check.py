"""`lab check FILE...`: validate scenario, stack and fleet profile files without touching a node."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lab.cli.root import app
from lab.errors import ConfigError
from lab.inputs import check_file


@app.command("check")
def check(files: list[Path] = typer.Argument(..., help="Scenario, stack or fleet profile files (YAML), or names of "
                                                   "shipped ones (cma_soak, h10-5.3.0, mixed).",
                                              show_default=False)) -> None:
    """Validate scenario, stack and fleet profile files; touches no node.

    Prints one line per file: `OK FILE (KIND: NAME)`, or on stderr
    `lab: error: WHAT, FILE:LINE, HINT`. Exits 2 if any file is bad.

    Example:

        lab check scenarios/*.yaml stacks/*.yaml
        lab check cma_soak
    """
    bad = 0
    for path in files:
        try:
            result = check_file(path)
        except ConfigError as exc:
            bad += 1
            print(f"lab: error: {exc}", file=sys.stderr)
            continue
        print(f"OK {path} ({result.kind}: {result.name})")
    if bad:
        raise typer.Exit(2)
