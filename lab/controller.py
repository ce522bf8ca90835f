"""Who this controller is: the words node locks and database sessions carry, so another controller can name it."""

from __future__ import annotations

import getpass
import os
import socket


def controller_name() -> str:
    """`user@host pid N`: enough for a person at another controller to find this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no $USER and no passwd entry (a bare container): the uid still names it
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"
