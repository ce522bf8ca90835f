"""Fleet errors that need the real host: an address already in use."""

from __future__ import annotations

import socket

import pytest

from lab.cli import main
from tests.conftest import require_fleet

pytestmark = pytest.mark.fleet


def test_address_in_use(tmp_path, capsys, monkeypatch):
    """A listener on a node's address:22 stops `fleet up` before anything is created."""
    require_fleet()
    monkeypatch.setenv("LAB_FLEET_NET", "127.77.202")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.77.202.2", 22))
        sock.listen()
        code = main(["fleet", "up", "--nodes", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("lab: error: address 127.77.202.2:22 is already in use, stop what listens there "
                   "(a host sshd on 0.0.0.0:22?) or pick other addresses with LAB_FLEET_NET=127.77.X\n")
    assert not (tmp_path / "fleet").exists()
    assert not (tmp_path / "inventory").exists()
