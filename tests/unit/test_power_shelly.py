"""The `shelly` power driver against the emulated Shelly Gen2 plug (lab/power/shelly_emulator.py): real HTTP under
uvicorn on 127.0.0.1, real SHA-256 digest authentication; no password ever in a result, an error, a log or --json."""

from __future__ import annotations

import json
import logging
import socket

import httpx
import pytest

from lab.cli import main
from lab.errors import PowerError
from lab.inventory import Host
from lab.power.base import driver_for, power_nodes
from lab.power.shelly_emulator import ShellyDevice, ShellyServer

PASSWORD = "plug-Pass-93e1"


@pytest.fixture()
def plug():
    """A two-channel Shelly with a password, served on an ephemeral port."""
    with ShellyServer(ShellyDevice(channels=2, password=PASSWORD)) as server:
        yield server


def shelly_host(name: str, address: str, **extra) -> Host:
    return Host(name, "127.77.9.1", {"lab_power": {"driver": "shelly", "host": address, **extra}})


def test_the_emulator_challenges_as_a_gen2_device(plug):
    """401 with an empty body and `Digest qop="auth", realm=<device id>, nonce=..., algorithm=SHA-256`; /shelly is open."""
    response = httpx.get(f"http://{plug.address}/rpc/Switch.GetStatus", params={"id": 0})
    assert response.status_code == 401 and response.content == b""
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Digest qop="auth", realm="shellyplusplugs-e86beae2c2a0", nonce="')
    assert challenge.endswith('", algorithm=SHA-256')
    info = httpx.get(f"http://{plug.address}/shelly").json()
    assert (info["gen"], info["auth_en"], info["auth_domain"]) == (2, True, "shellyplusplugs-e86beae2c2a0")
    assert plug.device.calls == []  # nothing ran without credentials


def test_a_digest_for_one_call_does_not_open_another(plug):
    """The emulator checks the digested uri: a captured Authorization header replayed on Switch.Set is refused."""
    auth = httpx.DigestAuth("admin", PASSWORD)
    with httpx.Client(auth=auth) as client:
        ok = client.get(f"http://{plug.address}/rpc/Switch.GetStatus", params={"id": 0})
    assert ok.status_code == 200
    header = ok.request.headers["authorization"]
    replay = httpx.get(f"http://{plug.address}/rpc/Switch.Set", params={"id": 0, "on": "false"},
                       headers={"Authorization": header})
    assert replay.status_code == 401 and plug.device.outputs == [True, True]


def test_on_off_status_with_digest_auth(plug):
    driver = driver_for(shelly_host("n1", plug.address, channel=1, password=PASSWORD))
    assert driver.label == f"shelly {plug.address} switch 1"
    assert driver.status() == "on"
    assert driver.off() == "switched off (was on)"
    assert driver.status() == "off" and plug.device.outputs == [True, False]
    assert driver.on() == "switched on (was off)"
    assert plug.device.calls == ["Switch.GetStatus id=1", "Switch.Set id=1 on=false", "Switch.GetStatus id=1",
                                 "Switch.Set id=1 on=true"]


def test_cycle_uses_the_plugs_flip_back_timer(plug):
    driver = driver_for(shelly_host("n1", plug.address, password=PASSWORD, delay=0.3))
    assert driver.cycle() == "off 0.3 s (toggle_after), on again"
    assert plug.device.calls[0] == "Switch.Set id=0 on=false toggle_after=0.3"
    assert plug.device.outputs[0] is True and plug.device.sources[0] == "timer"  # the plug switched back itself


def test_wrong_or_missing_password(plug):
    wrong = driver_for(shelly_host("n1", plug.address, password="not-the-" + PASSWORD))
    with pytest.raises(PowerError) as err:
        wrong.off()
    assert str(err.value) == (f"shelly {plug.address} switch 0 refused Switch.Set: authentication failed (HTTP 401), "
                              "check user and password in lab_power")
    none = driver_for(shelly_host("n1", plug.address))
    with pytest.raises(PowerError) as err:
        none.status()
    assert str(err.value) == (f"shelly {plug.address} switch 0 refused Switch.GetStatus: authentication failed "
                              "(HTTP 401), the plug has a password: add one")
    assert plug.device.outputs == [True, True]


def test_a_channel_the_device_lacks(plug):
    driver = driver_for(shelly_host("n1", plug.address, channel=5, password=PASSWORD))
    with pytest.raises(PowerError) as err:
        driver.status()
    assert str(err.value) == (f"shelly {plug.address} switch 5 refused Switch.GetStatus: HTTP 500 "
                              "Argument 'id', value 5 not found! (code -105)")


def test_a_plug_that_does_not_answer_fails_its_node_only(plug):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    results = power_nodes([shelly_host("n1", dead, password=PASSWORD),
                           shelly_host("n2", plug.address, password=PASSWORD)], "off")
    assert [(r.node, r.ok, r.state, r.detail) for r in results] == [
        ("n1", False, None, f"shelly {dead} switch 0 does not answer (connection refused)"),
        ("n2", True, "off", f"shelly {plug.address} switch 0: switched off (was on)"),
    ]


def test_no_password_in_lab_power_output_or_logs(plug, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n"
                    f"    n1: {{ansible_host: 127.77.9.1, lab_power: {{driver: shelly, host: '{plug.address}',"
                    f" password: {PASSWORD}}}}}\n"
                    f"    n2: {{ansible_host: 127.77.9.2, lab_power: {{driver: shelly, host: '{plug.address}',"
                    f" channel: 1, password: wrong-{PASSWORD}}}}}\n")
    assert main(["power", "n1", "n2", "off", "--inventory", str(path)]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == (f"n1: off (shelly {plug.address} switch 0: switched off (was on))\n"
                          f"n2: error: shelly {plug.address} switch 1 refused Switch.Set: authentication failed "
                          "(HTTP 401), check user and password in lab_power\n", "")
    assert main(["power", "n1", "n2", "status", "--inventory", str(path), "--json"]) == 1
    out, err = capsys.readouterr()
    assert [(r["node"], r["ok"], r["state"]) for r in json.loads(out)] == [("n1", True, "off"), ("n2", False, None)]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request: GET" in logged  # httpx's own log was captured, and holds no password
    for text in (out, err, logged):
        assert PASSWORD not in text
