"""How hailortcli prints, shared by its command line (cli.py) and its inference commands (bench.py)."""

# Runs on the virtual node: standard library only, Python >= 3.9, relative imports only
# (the package is copied under other names into the .deb packages).

from __future__ import annotations

CLI_ERROR = "[HailoRT CLI] [error] "


def g6(value: float) -> str:
    """A number the way C++ streams print a double (6 significant digits)."""
    return "%g" % value
