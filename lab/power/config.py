"""A node's `lab_power` inventory variable, validated per driver: one-line errors naming the inventory and the host."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from lab.errors import ConfigError
from lab.inventory import POWER_VAR, Host, Secret
from lab.yamlload import show

DRIVERS = ("command", "pdudaemon", "shelly")
# pdudaemon's own default port; the virtual fleet's daemon listens on 16521 so that the two never collide.
PDUDAEMON_PORT = 16421
_ADDRESS_RE = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>.*))?")
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
EXAMPLES = {
    "pdudaemon": 'lab_power: {driver: pdudaemon, daemon: "127.0.0.1:16421", pdu: rack-pdu, port: 3}',
    "command": "lab_power: {driver: command, 'on': [relay, 'on', '3'], 'off': [relay, 'off', '3']}",
    "shelly": 'lab_power: {driver: shelly, host: 192.0.2.50, password: "{{ vault_shelly_password }}"}',
}


def _problem(what: str, hint: str | None = None) -> PydanticCustomError:
    """A validator's error carrying lab's own sentence and hint (pydantic's are not shown to a person)."""
    return PydanticCustomError("lab", what.replace("{", "(").replace("}", ")"), {"hint": hint})


def _address(value: Any, *, port_required: bool, example: str) -> str:
    """`HOST:PORT` (or `HOST[:PORT]` when the port is optional); an IPv6 host in brackets."""
    form = "HOST:PORT" if port_required else "HOST or HOST:PORT"
    match = _ADDRESS_RE.fullmatch(value) if isinstance(value, str) else None
    if not match or not _HOST_RE.fullmatch(match["host"]) or (port_required and match["port"] is None):
        raise _problem(f"must be {form}, got {show(value)}", f"e.g. {example}")
    port = match["port"]
    if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
        raise _problem(f"must be {form} with a port from 1 to 65535, got {show(value)}", f"e.g. {example}")
    return value


def _daemon(value: Any) -> str:
    return _address(value, port_required=True, example=f'daemon: "127.0.0.1:{PDUDAEMON_PORT}"')


def _plug_host(value: Any) -> str:
    return _address(value, port_required=False, example="host: 192.0.2.50 (or 192.0.2.50:8080)")


def _positive_int(value: Any) -> int:
    """A whole number above zero; YAML's `3` or a templated `"3"`, never a bool."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _problem(f"must be a positive integer, got {show(value)}", "the outlet's number as the PDU counts them")
    return value


def _channel(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _problem(f"must be a whole number from 0, got {show(value)}", "a plug has channel 0; a relay 0, 1, ...")
    return value


def _seconds(value: Any, *, zero: bool = True, whole: bool = False) -> float:
    """A duration in seconds: a number (≥ 0, or > 0), whole when the receiver only takes integers."""
    try:
        number = float(value) if not isinstance(value, bool) and isinstance(value, int | float | str) else None
    except ValueError:
        number = None
    if number is None or number < 0 or (number == 0 and not zero) or number != number:
        raise _problem(f"must be a number of seconds{'' if zero else ' above 0'}, got {show(value)}", "e.g. 5 or 2.5")
    if whole and number != int(number):
        raise _problem(f"must be a whole number of seconds, got {show(value)}", "pdudaemon takes whole seconds")
    return int(number) if whole else number


def _name(value: Any) -> str:
    if isinstance(value, Secret) or not isinstance(value, str) or not value.strip():
        raise _problem(f"must be a name, got {show(value)}", "the PDU's name in pdudaemon's config (its 'pdus' key)")
    return value


def _user(value: Any) -> str:
    if isinstance(value, Secret) or not isinstance(value, str) or not value:
        raise _problem(f"must be a user name, got {show(value)}", "Shelly's user is admin")
    return value


def _password(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str) and value:
        return Secret(value)
    raise _problem("must be a string", 'e.g. password: "{{ vault_shelly_password }}" (see README, Ansible Vault)')


def _argv(value: Any) -> list[str | Secret]:
    """An argument list: a non-empty list of strings (a credential inside is a Secret), never a shell line."""
    hint = "e.g. [uhubctl, -l, '1-1', -p, '2', -a, 'off']: quote on, off, yes, no and numbers (YAML reads them otherwise)"
    if not isinstance(value, list) or not value:
        raise _problem(f"must be a list of strings (an argument list, no shell), got {show(value)}", hint)
    for index, arg in enumerate(value, 1):
        if not isinstance(arg, str | Secret):
            raise _problem(f"must be a list of strings (an argument list, no shell), item {index} is {show(arg)}", hint)
    if not str(value[0]).strip():
        raise _problem("must start with a program, got ''", hint)
    return list(value)


class _Power(BaseModel):
    """What every driver takes: how long power stays off in a cycle, how long one request or command may take."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    delay: Annotated[float, BeforeValidator(_seconds)] = 5.0
    timeout: Annotated[float, BeforeValidator(lambda v: _seconds(v, zero=False))] = 30.0


class PdudaemonPower(_Power):
    """An outlet of a PDU that a running pdudaemon drives: its HTTP address, the PDU's name there, the port."""

    driver: Literal["pdudaemon"]
    daemon: Annotated[str, BeforeValidator(_daemon)]
    pdu: Annotated[str, BeforeValidator(_name)]
    port: Annotated[int, BeforeValidator(_positive_int)]
    # pdudaemon reads `delay` with int(): a fraction would be refused with a 500
    delay: Annotated[int, BeforeValidator(lambda v: _seconds(v, whole=True))] = 5


class CommandPower(_Power):
    """LAVA-style commands (argument lists, run without a shell) that switch a node's power on and off."""

    driver: Literal["command"]
    on: Annotated[list[str | Secret], BeforeValidator(_argv)]
    off: Annotated[list[str | Secret], BeforeValidator(_argv)]
    cycle: Annotated[list[str | Secret] | None, BeforeValidator(_argv)] = None
    status: Annotated[list[str | Secret] | None, BeforeValidator(_argv)] = None
    timeout: Annotated[float, BeforeValidator(lambda v: _seconds(v, zero=False))] = 60.0


class ShellyPower(_Power):
    """A Shelly Gen2+ plug or relay channel over its HTTP RPC, with digest authentication when it has a password."""

    driver: Literal["shelly"]
    host: Annotated[str, BeforeValidator(_plug_host)]
    channel: Annotated[int, BeforeValidator(_channel)] = 0
    user: Annotated[str, BeforeValidator(_user)] = "admin"
    password: Annotated[Secret | None, BeforeValidator(_password)] = None
    # Shelly's toggle_after (the flip-back timer) must be above zero
    delay: Annotated[float, BeforeValidator(lambda v: _seconds(v, zero=False))] = 5.0
    timeout: Annotated[float, BeforeValidator(lambda v: _seconds(v, zero=False))] = 10.0


PowerConfig = PdudaemonPower | CommandPower | ShellyPower
MODELS: dict[str, type[_Power]] = {"pdudaemon": PdudaemonPower, "command": CommandPower, "shelly": ShellyPower}
_NEEDS = {"pdudaemon": "daemon, pdu and port", "command": "on and off", "shelly": "host"}


def parse_power(host: Host, source: str) -> PowerConfig | None:
    """A host's validated lab_power, or None when it has none; a ConfigError naming `source` and the host if bad."""
    if POWER_VAR not in host.vars or host.vars[POWER_VAR] is None:
        return None
    raw = host.vars[POWER_VAR]
    where = f"host {host.name}: {POWER_VAR}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with a driver, got {show(raw)}", source, f"e.g. {EXAMPLES['pdudaemon']}")
    driver = raw.get("driver")
    if driver is None:
        raise ConfigError(f"{where} has no driver", source, f"use one of {', '.join(DRIVERS)}, e.g. {EXAMPLES['pdudaemon']}")
    if not isinstance(driver, str) or driver not in MODELS:
        raise ConfigError(f"{where} has driver {show(driver)}, which lab does not know", source,
                          f"use one of {', '.join(DRIVERS)}")
    model = MODELS[driver]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        # one line: the first problem other than a missing key, else the first missing key (a misspelt key is both
        # unknown and missing, and the unknown one says more)
        err = min(exc.errors(), key=lambda e: e["type"] == "missing")
        raise _config_error(err, model, driver, where, source) from None


def _config_error(err: dict, model: type[_Power], driver: str, where: str, source: str) -> ConfigError:
    """One pydantic error as lab's sentence: what is wrong with which key, and how to write it."""
    key = ".".join(str(p) for p in err["loc"][:1])
    own = [f for f in model.model_fields if f not in ("driver", "delay", "timeout")]
    takes = ", ".join(own + ["delay", "timeout"])
    if err["type"] == "missing":
        return ConfigError(f"{where} ({driver}) has no '{key}'", source,
                           f"{driver} needs {_NEEDS[driver]}, e.g. {EXAMPLES[driver]}")
    if err["type"] == "extra_forbidden":
        return ConfigError(f"{where} ({driver}) has unknown key '{key}'", source, f"{driver} takes {takes}")
    if err["type"] == "lab":
        return ConfigError(f"{where}.{key} {err['msg']}", source, (err.get("ctx") or {}).get("hint"))
    # pydantic's own check (a type no validator of ours saw): its sentence, never the value (it may be a secret)
    return ConfigError(f"{where}.{key} is not valid: {err['msg'][:1].lower()}{err['msg'][1:]}", source, f"{driver} takes {takes}")
