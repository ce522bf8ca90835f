"""The only module that talks to ansible-runner: run a playbook on many nodes, collect per-host results."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ansible_runner

from lab import resources
from lab.errors import PlaybookError


@dataclass
class HostResult:
    """What one host did in one playbook run."""

    host: str
    ok: int = 0
    changed: int = 0
    failed: bool = False
    unreachable: bool = False
    messages: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlaybookResult:
    """The outcome of one playbook run over all hosts."""

    status: str
    rc: int
    hosts: dict[str, HostResult]

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, r in self.hosts.items() if r.failed or r.unreachable)


def _on_event(hosts: dict[str, HostResult], user_handler: Callable | None) -> Callable[[dict], bool]:
    """Fold ansible-runner events into per-host results (and pass them on to a caller's handler)."""

    def handle(event: dict) -> bool:
        data = event.get("event_data") or {}
        host = data.get("host")
        name = event.get("event", "")
        if host:
            result = hosts.setdefault(host, HostResult(host))
            res = data.get("res") or {}
            if name == "runner_on_ok":
                result.ok += 1
                result.changed += int(bool(res.get("changed")))
                if isinstance(res.get("ansible_facts"), dict):
                    result.facts.update(res["ansible_facts"])
            elif name == "runner_on_failed" and not data.get("ignore_errors"):
                result.failed = True
                result.messages.append(f"{data.get('task', '?')}: {_message(res)}")
            elif name == "runner_on_unreachable":
                result.unreachable = True
                result.messages.append(f"unreachable: {_message(res)}")
        if user_handler is not None:
            user_handler(event)
        return False  # do not keep event files: they may hold task output we never want on disk twice

    return handle


def _message(res: dict) -> str:
    """A one-line reason from a task result (a loop's: what each failed or unreachable item said)."""
    items = [r for r in res.get("results") or () if isinstance(r, dict) and (r.get("failed") or r.get("unreachable"))]
    if items:
        return "; ".join(_message(r) for r in items)[:400]
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or ""
    return " ".join(str(msg).split())[:400]


def _envvars() -> dict[str, str]:
    """Environment of ansible-playbook: the project's config, and this interpreter's ansible on PATH."""
    bindir = str(Path(sys.executable).parent)
    return {
        "ANSIBLE_CONFIG": str(resources.ansible_cfg()),
        "ANSIBLE_ROLES_PATH": str(resources.roles_dir()),
        # ansible-runner sets False unless told: ssh would then get StrictHostKeyChecking=no before the
        # inventory's =yes (the first one wins), and a node with a changed host key would still be used.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        # a vaulted inventory (lab_power's credentials): made absolute, as ansible-playbook runs in runner's own folder
        **({"ANSIBLE_VAULT_PASSWORD_FILE": os.path.abspath(os.path.expanduser(os.environ["ANSIBLE_VAULT_PASSWORD_FILE"]))}
           if os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE") else {}),
    }


def run_playbook(
    playbook: str | Path,
    inventory: str | Path,
    *,
    extravars: dict[str, Any] | None = None,
    limit: str | None = None,
    forks: int | None = None,
    event_handler: Callable[[dict], None] | None = None,
    timeout: int | None = None,
) -> PlaybookResult:
    """Run one playbook through ansible-runner with the project's ansible.cfg; never raises for host failures."""
    path = Path(playbook)
    if not path.is_absolute():
        path = resources.playbooks_dir() / path
    if not path.exists():
        raise PlaybookError(f"no playbook {path}", hint="lab's playbooks ship in its package (lab/data/playbooks)")
    hosts: dict[str, HostResult] = {}
    private = Path(tempfile.mkdtemp(prefix="lab-runner-"))
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(resources.data_dir()),
            playbook=str(path),
            inventory=str(Path(inventory).resolve()),
            extravars=extravars or {},
            limit=limit,
            forks=forks,
            envvars=_envvars(),
            event_handler=_on_event(hosts, event_handler),
            quiet=True,
            timeout=timeout,
        )
        if runner.status != "successful" and not hosts:
            tail = " / ".join(line.strip() for line in runner.stdout.read().splitlines()[-3:] if line.strip())
            raise PlaybookError(f"{path.name} did not run: {tail or runner.status}", str(path), "run it with ansible-playbook to see why")
        return PlaybookResult(status=runner.status, rc=runner.rc, hosts=hosts)
    finally:
        shutil.rmtree(private, ignore_errors=True)
