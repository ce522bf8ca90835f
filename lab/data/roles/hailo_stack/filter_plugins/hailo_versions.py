"""Jinja filter of the hailo_stack role: choose the archive version that satisfies a stack's pin."""

from __future__ import annotations

from lab.sources import pick_version


def madison_pick(lines: list, pin: str) -> str:
    """From `apt-cache madison` lines (`name | version | source`), the newest version matching the pin, else ''."""
    versions = [line.split("|")[1].strip() for line in lines if line.count("|") >= 2]
    return pick_version(pin, versions) or ""


class FilterModule:
    """The role's filters."""

    def filters(self) -> dict:
        return {"hailo_madison_pick": madison_pick}
