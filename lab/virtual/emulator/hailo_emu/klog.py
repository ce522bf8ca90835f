"""The node's kernel-log view: driver lines go to the journal as `kernel` and to a ring file in /run."""

from __future__ import annotations

import os
import socket
import time

from .state import shared_dir, shared_file

RING_FILE = "kmsg"
RING_MAX_BYTES = 256 * 1024

NOTICE = 5
WARNING = 4
ERR = 3
INFO = 6


def _journal_datagram(message: str, priority: int) -> bytes:
    """One entry in the journal's native protocol, marked like a kernel line (facility kern)."""
    fields = (
        ("MESSAGE", message),
        ("PRIORITY", str(priority)),
        ("SYSLOG_FACILITY", "0"),
        ("SYSLOG_IDENTIFIER", "kernel"),
    )
    return "".join("%s=%s\n" % (k, v.replace("\n", " ")) for k, v in fields).encode()


class KernelLog:
    """Writes driver lines where the agent reads kernel logs on a virtual node (never /dev/kmsg)."""

    def __init__(self, state_dir: str, journal_socket: str):
        self.state_dir = state_dir
        self.journal_socket = journal_socket

    def emit(self, lines, priority: int = NOTICE) -> None:
        """Log each line: appended to the ring file and sent to the journal when one listens."""
        lines = list(lines)
        if not lines:
            return
        shared_dir(self.state_dir)
        path = os.path.join(self.state_dir, RING_FILE)
        stamp = time.monotonic()
        with open(path, "a", encoding="utf-8") as f:
            for line in lines:
                f.write("[%12.6f] %s\n" % (stamp, line))
        shared_file(path)
        if os.path.getsize(path) > RING_MAX_BYTES:
            with open(path, encoding="utf-8") as f:
                tail = f.readlines()[-2000:]
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(tail)
        self._journal(lines, priority)

    def _journal(self, lines, priority: int) -> None:
        """Send the lines over the journal's native socket; silently skipped when there is none."""
        if not self.journal_socket or not os.path.exists(self.journal_socket):
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                for line in lines:
                    sock.sendto(_journal_datagram(line, priority), self.journal_socket)
        except OSError:
            pass

    def read(self) -> str:
        """The ring file as dmesg would print it (used by tests and diagnostics)."""
        try:
            with open(os.path.join(self.state_dir, RING_FILE), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return ""
