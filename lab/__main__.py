"""`python -m lab` runs the CLI."""

from lab.cli import run

run()
