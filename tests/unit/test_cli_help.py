"""Every command has help, an example, and a line in the README."""

from __future__ import annotations

from pathlib import Path


import typer.main

from lab.cli import _register, app, main

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def commands():
    """(path, click command) of every leaf command of the app."""
    _register()
    root = typer.main.get_command(app)

    def walk(cmd, path):
        if hasattr(cmd, "commands"):  # a group (typer carries its own copy of click)
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield " ".join(path), cmd

    return list(walk(root, []))


def test_every_command_has_help_example_and_readme_line(capsys):
    found = commands()
    assert found, "no commands registered"
    for path, cmd in found:
        assert (cmd.help or "").strip(), f"lab {path} has no help"
        assert "Example:" in cmd.help, f"lab {path} has no Example: block"
        assert f"lab {path}" in README, f"lab {path} is not in the README"
        assert main(path.split() + ["--help"]) == 0
        assert "Example:" in capsys.readouterr().out
