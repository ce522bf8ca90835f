"""`lab parse`: turn the saved output of a Hailo tool or driver into fields."""

from __future__ import annotations

import enum
import json
from pathlib import Path

import typer

from lab.agent import parsers
from lab.bounds import line_of_number, out_of_bounds
from lab.cli.root import app
from lab.errors import ConfigError, ParseError

Kind = enum.Enum("Kind", {name: name for name in parsers.PARSERS}, type=str)  # type: ignore[misc]

_WHAT_TO_SAVE = {
    "benchmark": "hailortcli benchmark HEF",
    "identify": "hailortcli fw-control identify",
    "run": "hailortcli run HEF --measure-temp",
    "run2": "hailortcli run2 set-net HEF",
    "scan": "hailortcli scan",
    "version": "hailortcli --version",
    "runtime-log": "hailortcli logs runtime",
    "dmesg": "dmesg (or journalctl -k)",
    "errors": "any HailoRT command that failed",
}


def read_input(path: Path) -> str:
    """Read a text file for a command; a missing or unreadable file is bad input (exit 2)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError("file not found", str(path), "check the path") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc.strerror})", str(path), "check the path and permissions") from None


def summary_lines(data: dict) -> list[str]:
    """A compact `field: value` view of a parsed record: empty fields left out, record lists counted."""
    lines = []
    for key, value in data.items():
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, bool):
            shown = "yes" if value else "no"
        elif isinstance(value, dict):
            shown = " ".join(f"{k}={v}" for k, v in value.items() if v is not None)
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            shown = f"{len(value)} (--json lists them)"
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value)
        else:
            shown = str(value)
        lines.append(f"{key}: {shown}")
    return lines


@app.command("parse")
def parse_command(
    kind: Kind = typer.Argument(..., help="Which output the file holds."),  # type: ignore[valid-type]
    file: Path = typer.Argument(..., help="The saved output.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Parse the saved output of a Hailo tool or driver and print its fields.

    KIND is benchmark, identify, run2, runtime-log or dmesg (also run, scan, version, errors).

    Example:
        hailortcli benchmark yolo26s_hailo10h.hef > bench.txt
        lab parse benchmark bench.txt
        lab parse dmesg dmesg.txt --json
    """
    name = kind.value
    text = read_input(file)
    try:
        result = parsers.parse(name, text)
    except parsers.ToolOutputError as exc:
        others = parsers.detect_kinds(text)
        hint = (f"it parses as {' or '.join(others)}: try lab parse {others[0]} {file}" if others
                else f"save the output of `{_WHAT_TO_SAVE[name]}`")
        raise ParseError(exc.what, str(file), hint) from None
    for _, value, problem in out_of_bounds(result.to_dict()):
        line = line_of_number(text, value)
        raise ParseError(problem, f"{file}:{line}" if line else str(file),
                         f"no Hailo tool reports that; check that the file is `{_WHAT_TO_SAVE[name]}` output "
                         "(docs/analysis.md lists lab's physical bounds)")
    if as_json:
        typer.echo(json.dumps({"kind": name, "source": str(file), "result": result.to_dict()}, indent=2))
        return
    typer.echo(f"{file}: {name}")
    for line in summary_lines(result.to_dict()):
        typer.echo(f"  {line}")
