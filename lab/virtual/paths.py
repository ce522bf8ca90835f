"""Where the virtual fleet keeps its cache and its state; overridable for tests."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CACHE_DIR = "/var/cache/lab"
DEFAULT_FLEET_DIR = "/var/lib/lab/fleet"
DEFAULT_NET = "127.77.0"


def cache_dir() -> Path:
    """Directory of reusable build products (base image, apt repository)."""
    return Path(os.environ.get("LAB_CACHE_DIR", DEFAULT_CACHE_DIR))


def fleet_dir() -> Path:
    """Directory of the running fleet's state (nodes, keys, known_hosts)."""
    return Path(os.environ.get("LAB_FLEET_DIR", DEFAULT_FLEET_DIR))


def fleet_net() -> str:
    """The first three octets of the fleet's loopback addresses (must be inside 127.77.0.0/16)."""
    return os.environ.get("LAB_FLEET_NET", DEFAULT_NET)
