"""Inventories: loaded with Ansible's own InventoryManager; hosts, groups and the variables lab uses."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import InventoryError

CHIPS = ("hailo10h", "hailo8", "hailo8l")
POWER_VAR = "lab_power"
EXECUTORS_GROUP = "lab_executors"  # hosts of this group are execution nodes, never nodes under test
EXECUTOR_VAR = "lab_executor"  # a node's execution node (a host of EXECUTORS_GROUP); absent: reached from here
VAULT_PASSWORD_ENV = "ANSIBLE_VAULT_PASSWORD_FILE"
MASK = "********"


class Secret:
    """A credential from the inventory (a `password`, or a value holding a vaulted one): never shown, only revealed.

    `repr`, `str` and f-strings give `********`; `reveal()` gives the value to the one call that needs it
    (an HTTP digest, a command's argument). `words` are the vaulted plaintexts inside the value (the value
    itself for a plain password), so a command's output that echoes one can be masked (`mask`)."""

    __slots__ = ("_value", "_words")

    def __init__(self, value: str, words: tuple[str, ...] = ()):
        self._value = value
        self._words = tuple(w for w in (words or (value,)) if w)

    def reveal(self) -> str:
        """The secret itself, for the request or command that needs it; never for display."""
        return self._value

    def mask(self, text: str) -> str:
        """`text` with every occurrence of this secret (and the vaulted values inside it) replaced by ********."""
        for word in sorted({self._value, *self._words}, key=len, reverse=True):
            if word:
                text = text.replace(word, MASK)
        return text

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass
class Host:
    """One node of an inventory, with what lab needs to reach it and run the agent there."""

    name: str
    address: str
    vars: dict[str, Any] = field(default_factory=dict)
    # the execution node this node is reached through (its `lab_executor`); its vars are as that host sees them
    via: Host | None = field(default=None, repr=False, compare=False)
    # names of the variables kept from `vars` because they hold a credential (become passwords, vaulted values)
    withheld: tuple[str, ...] = field(default=(), compare=False)

    @property
    def executor(self) -> str | None:
        """The name of the execution node this node is reached through, None when reached from the controller."""
        return self.via.name if self.via is not None else None

    @property
    def chip(self) -> str | None:
        return self.vars.get("lab_chip")

    @property
    def time_scale(self) -> float:
        return float(self.vars.get("lab_time_scale", 1.0))


@dataclass
class Inventory:
    """A loaded inventory: its source, hosts in order, group membership, and its execution nodes apart."""

    source: Path
    hosts: dict[str, Host]  # the nodes (never an execution node)
    groups: dict[str, list[str]]
    executors: dict[str, Host] = field(default_factory=dict)  # hosts of `lab_executors`, as the controller reaches them

    def select(self, limit: str | None = None) -> list[Host]:
        """Hosts matching an Ansible-style limit (comma-separated names or groups), or all."""
        if not limit:
            return list(self.hosts.values())
        wanted: list[str] = []
        for part in (p.strip() for p in limit.split(",") if p.strip()):
            if part in self.hosts:
                wanted.append(part)
            elif part in self.groups:
                wanted.extend(self.groups[part])
            else:
                raise InventoryError(f"--limit names {part!r}, which is neither a host nor a group",
                                     str(self.source), f"hosts: {', '.join(self.hosts)}")
        return [self.hosts[n] for n in dict.fromkeys(wanted)]


def resolve(name_or_path: str) -> Path:
    """`pis` -> ./inventory/pis.yml (or .yaml, .ini); a path is taken as it is."""
    path = Path(name_or_path)
    if path.exists():
        return path
    if "/" not in name_or_path:
        for suffix in (".yml", ".yaml", ".ini"):
            candidate = Path("inventory") / f"{name_or_path}{suffix}"
            if candidate.exists():
                return candidate
    raise InventoryError(f"no inventory {name_or_path!r}", name_or_path,
                         "give a path, or a name in inventory/ (pis -> inventory/pis.yml); "
                         "`lab fleet up` writes inventory/virtual.yml")


def load(name_or_path: str) -> Inventory:
    """Load an inventory with ansible's InventoryManager; errors name the file and the fix."""
    from ansible import constants as C
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import EncryptedString
    from ansible.vars.manager import VariableManager

    path = resolve(name_or_path)
    loader = DataLoader()
    # Vault-encrypted files (group_vars/all/vault.yml) are opened as the loader reads them; inline `!vault` values
    # when lab_power is templated (_template_power).
    secrets = _vault_secrets(loader)
    loader.set_vault_secrets(secrets)
    # An inventory Ansible cannot parse is an error here, not a warning followed by "no hosts".
    C.INVENTORY_UNPARSED_IS_FAILED = True
    C.INVENTORY_ANY_UNPARSED_IS_FAILED = True
    noise = io.StringIO()
    try:
        with contextlib.redirect_stderr(noise):  # Ansible warns once per plugin; the error says it once
            manager = InventoryManager(loader=loader, sources=[str(path)])
    except AnsibleError as exc:
        first = " ".join(str(exc).split())[:300]
        raise InventoryError(f"cannot read inventory: {first}", str(path),
                             "use YAML (all/children/hosts) or INI; see inventory/pis.example.yml") from None
    variables = VariableManager(loader=loader, inventory=manager)
    hosts: dict[str, Host] = {}
    for host in manager.get_hosts():
        hv = variables.get_vars(host=host, include_hostvars=False)
        # Become passwords and vaulted values stay with Ansible: lab never needs them, and a vaulted value that
        # lab_power's templating decrypted would keep its plaintext cached in the object.
        keep = {k: v for k, v in hv.items() if not k.startswith("ansible_become_pass") and k != "ansible_password"
                and not isinstance(v, EncryptedString)}
        if POWER_VAR in hv:
            keep[POWER_VAR] = _template_power(loader, secrets, hv, host.name, path)
        withheld = tuple(sorted(str(k) for k in hv if k not in keep and k != POWER_VAR))
        hosts[host.name] = Host(host.name, str(hv.get("ansible_host", host.name)), keep, withheld=withheld)
    executors = _split_executors(manager, hosts, path)
    if not hosts:
        raise InventoryError("the inventory has no hosts", str(path), "add hosts, e.g. under all: hosts:")
    for name, host in hosts.items():
        chip = host.chip
        if chip is not None and chip not in CHIPS:
            raise InventoryError(f"host {name} has lab_chip {chip!r}", str(path), f"use one of {', '.join(CHIPS)}")
    groups = {g.name: [h.name for h in g.get_hosts() if h.name in hosts] for g in manager.groups.values()
              if g.name not in ("all", "ungrouped", EXECUTORS_GROUP)}
    return Inventory(path, hosts, groups, executors)


def _split_executors(manager, hosts: dict[str, Host], path: Path) -> dict[str, Host]:
    """Move the hosts of `lab_executors` out of `hosts` and link each node to the executor its `lab_executor`
    names; a name that is not an executor is a one-line InventoryError naming the node."""
    group = manager.groups.get(EXECUTORS_GROUP)
    names = [h.name for h in group.get_hosts()] if group is not None else []
    executors = {name: hosts.pop(name) for name in names if name in hosts}
    for name, host in hosts.items():
        wanted = host.vars.get(EXECUTOR_VAR)
        if wanted in (None, ""):
            continue
        if not isinstance(wanted, str) or wanted not in executors:
            known = ", ".join(executors) or f"none: the inventory has no {EXECUTORS_GROUP} group"
            raise InventoryError(f"host {name} has {EXECUTOR_VAR} {wanted!r}, which is not a host of {EXECUTORS_GROUP}",
                                 str(path), f"name one of its execution nodes ({known})")
        host.via = executors[wanted]
    return executors


def _vault_secrets(loader) -> list:
    """The vault secret of the password file that ANSIBLE_VAULT_PASSWORD_FILE names, read as ansible-playbook reads it.

    Ansible's own reader: a plain file holds the password, an executable one is run for it (a client script asked
    for the vault id). Read from the environment at each load, not from ansible.constants, which keeps the value
    of the first import for the life of the process. Without the variable there is none."""
    from ansible.errors import AnsibleError
    from ansible.parsing.vault import get_file_vault_secret

    password_file = os.environ.get(VAULT_PASSWORD_ENV)
    if not password_file:
        return []
    try:
        secret = get_file_vault_secret(filename=password_file, vault_id="default", loader=loader)
        secret.load()
    except AnsibleError as exc:
        # Ansible's message names the file (never its content): "The vault password file ... was not found".
        first = " ".join(str(exc).split())[:200]
        raise InventoryError(f"cannot read the vault password file: {first}", f"{VAULT_PASSWORD_ENV}={password_file}",
                             "name a readable file holding the vault password (see README, Wiring a rack's power)") from None
    return [("default", secret)]


@contextlib.contextmanager
def _vault_context(secrets: list) -> Iterator[None]:
    """Ansible's vault context for decrypting inline `!vault` values while lab_power is templated, then the one before.

    VaultSecretsContext.initialize() may be called only once per process (the ansible-playbook model); lab loads
    inventories many times in one process (lab run, then resume; tests), each with the password file of its time."""
    from ansible.parsing.vault import VaultSecretsContext

    previous = VaultSecretsContext._current
    VaultSecretsContext._current = VaultSecretsContext(secrets) if secrets else None
    try:
        yield
    finally:
        VaultSecretsContext._current = previous


def _template_power(loader, secrets: list, hv: dict[str, Any], name: str, path: Path) -> Any:
    """A host's lab_power with its `{{ ... }}` resolved by Ansible's Templar; credentials wrapped as `Secret`.

    A string becomes a Secret when it is a `password`, holds a vaulted value, or contains one (an argument such as
    "admin:{{ vault_pdu_password }}"). Errors name the host and the inventory, never a value."""
    from ansible.errors import AnsibleError
    from ansible.parsing.vault import EncryptedString, VaultedValue
    from ansible.template import Templar

    templar = Templar(loader=loader, variables=hv)
    with _vault_context(secrets):
        try:
            value = templar.template(hv[POWER_VAR])
        except AnsibleError as exc:
            raise _template_error(exc, name, path) from None
        # The plaintexts of the host's vaulted values, to tell which templated strings hold one: Ansible tags a
        # value that *is* a vaulted one, not a string built around it.
        vaulted: list[str] = []
        for item in hv.values():
            if isinstance(item, EncryptedString):
                with contextlib.suppress(AnsibleError):  # another vault id's value: not one lab_power can use
                    vaulted.append(str(templar.template(item)))

    def plain(item: Any, key: Any = None) -> Any:
        """Ansible's tagged containers and scalars as plain Python, credentials as Secret."""
        if isinstance(item, dict):
            return {_plain_key(k): plain(v, _plain_key(k)) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [plain(v, key) for v in item]
        if isinstance(item, str):
            inside = tuple(w for w in vaulted if w and w in item)
            if key == "password" or inside or VaultedValue.is_tagged_on(item):
                return Secret(str(item), inside)
            return str(item)
        if isinstance(item, bool):
            return bool(item)
        if isinstance(item, int):
            return int(item)
        if isinstance(item, float):
            return float(item)
        return item

    return plain(value)


def _plain_key(key: Any) -> Any:
    """A mapping key as lab reads it: YAML 1.1 reads a bare `on:`/`off:` key as true/false."""
    if key is True:
        return "on"
    if key is False:
        return "off"
    return str(key) if isinstance(key, str) else key


def _template_error(exc: Exception, name: str, path: Path) -> InventoryError:
    """One line for a lab_power that cannot be templated: a vault that will not open, or an undefined variable."""
    from ansible.parsing.vault import AnsibleVaultError

    chain, cause = [], exc
    while cause is not None and len(chain) < 20:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(exc).split())
    # a vaulted value that will not open: a vault error, or (templating) ansible's internal UndecryptableVaultError,
    # known here by name so as not to import a private module
    if any(isinstance(e, AnsibleVaultError) or type(e).__name__ == "UndecryptableVaultError" for e in chain):
        if not os.environ.get(VAULT_PASSWORD_ENV):
            return InventoryError(f"host {name}: lab_power uses a vaulted value and no vault password is given",
                                  str(path), f"set {VAULT_PASSWORD_ENV} to the vault password file")
        return InventoryError(f"host {name}: lab_power uses a vaulted value that the vault password does not open",
                              str(path), f"check the password file {VAULT_PASSWORD_ENV} names")
    return InventoryError(f"host {name}: lab_power cannot be templated: {text[:200]}", str(path),
                          "define the variables it uses (a vaulted one with `ansible-vault encrypt_string`)")
