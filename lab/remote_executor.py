"""Execution nodes: each executor's nodes run a playbook through `ansible-runner worker` over SSH, the rest locally.

The executor port's adapter for inventories with a `lab_executors` group (design: docs/architecture.md,
"Execution nodes"). Per playbook, nodes are grouped by their `lab_executor`; every group runs in its own
thread: the controller's own nodes through lab.ansible.run_playbook as before, an executor's through
lab.ansible.run_playbook_streamed with a worker started over SSH (lab.ssh.worker_argv). What travels to an
executor is only its own: an inventory of its nodes with the controller-only variables removed (power
drivers, secrets), the extravars of its nodes, and the controller files they name, cached on the executor
by content (`~/.cache/lab/files/<sha256>/<name>`). An executor lost mid-playbook (WorkerLostError) makes
its nodes "lost" (lab.engine.state), never the others'.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lab.ansible import PlaybookResult, check_worker, run_playbook_streamed
from lab.engine.plan import Plan
from lab.engine.state import NodeResult
from lab.errors import ConfigError, PlaybookError, WorkerLostError
from lab.executor import AnsibleExecutor
from lab.inventory import EXECUTOR_VAR, EXECUTORS_GROUP, POWER_VAR, Host, Inventory, Secret
from lab.ssh import EXECUTOR_CONTROL_DIR, run_remote, runner_argv, runner_bindir, stale_workers_cleanup, worker_argv

RUNNER_DIR = "/var/tmp/lab-runner"  # workers' private data dirs on an executor (removed by `--delete`; a dead
# worker's by the next check_executor or release: tidy_executor)
CACHE_DIR = ".cache/lab/files"  # controller files on an executor, under its login user's home, by sha256
KEEPALIVE_SECONDS = 15  # the worker's keepalive when ansible-playbook is silent
IDLE_TIMEOUT = 60.0  # no byte for this long (4 keepalives missed): the executor is lost
MIN_ANSIBLE_CORE = (2, 17)
JOB_MARGIN = 3600  # beyond a phase's own time and two reboots: provisioning (apt, DKMS builds on a Pi)

# Variables only the controller uses: never written to an executor's inventory
CONTROLLER_ONLY = {POWER_VAR, EXECUTOR_VAR, "lab_runner"}
# Ansible's magic variables as the inventory loader returns them: set by Ansible itself on the executor
MAGIC = {"inventory_file", "inventory_dir", "inventory_hostname", "inventory_hostname_short", "group_names",
         "groups", "ansible_facts", "playbook_dir", "ansible_playbook_python", "ansible_config_file",
         "ansible_version", "omit", "role_names", "ansible_check_mode", "ansible_diff_mode", "ansible_forks",
         "ansible_inventory_sources", "ansible_run_tags", "ansible_skip_tags", "ansible_verbosity",
         "ansible_search_path"}
# Extravars holding one entry per node (node -> its phase spec, its install): an executor gets its nodes' only
PER_NODE = ("lab_phase_specs", "lab_installs")


# ---- what travels ---------------------------------------------------------------------------------

def _holds_secret(value: Any) -> bool:
    if isinstance(value, Secret):
        return True
    if isinstance(value, Mapping):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_secret(v) for v in value)
    return False


def plain(value: Any) -> Any:
    """Ansible's tagged strings, numbers and containers as plain Python (what yaml.safe_dump writes)."""
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if value is None:
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def travelling_vars(host: Host) -> dict[str, Any]:
    """A node's variables as its executor's inventory gets them: no controller-only one, no magic variable,
    nothing holding a secret."""
    return {str(k): plain(v) for k, v in host.vars.items()
            if k not in CONTROLLER_ONLY and k not in MAGIC and not k.startswith("ansible_play") and not _holds_secret(v)}


def subset_inventory(inv: Inventory, nodes: list[str]) -> dict:
    """The inventory an executor's worker gets: only `nodes`, their own variables, the groups they are in."""
    children = {}
    for group, members in inv.groups.items():
        mine = [n for n in members if n in nodes]
        if mine and group != EXECUTORS_GROUP:
            children[group] = {"hosts": {n: None for n in mine}}
    doc: dict[str, Any] = {"hosts": {n: travelling_vars(inv.hosts[n]) for n in nodes}}
    if children:
        doc["children"] = children
    return plain({"all": doc})  # Ansible's names are tagged strings


def _names_file(keys: tuple[str, ...]) -> bool:
    """Whether a string at this key path names a controller file: the agent zipapp, a model's `src`, an item of
    Hailo's `debs` or `wheels` (never any other `src`: a phase spec holds node paths too)."""
    return (keys[-1:] == ("lab_agent_bundle",) or keys[-1:] in (("debs",), ("wheels",))
            or (keys[-1:] == ("src",) and len(keys) >= 3 and keys[-3] == "lab_models"))


def controller_files(extravars: Any, keys: tuple[str, ...] = ()) -> list[str]:
    """Paths of controller files the extravars name (the agent zipapp, models' `src`, Hailo's debs and wheels):
    absolute paths of existing files where those keys name them."""
    found: list[str] = []
    if isinstance(extravars, Mapping):
        for k, v in extravars.items():
            found += controller_files(v, (*keys, str(k)))
    elif isinstance(extravars, list | tuple):
        for v in extravars:
            found += controller_files(v, keys)
    elif isinstance(extravars, str) and _names_file(keys) and extravars.startswith("/") and Path(extravars).is_file():
        found.append(extravars)
    return list(dict.fromkeys(found))


def rewrite_files(extravars: Any, where: Mapping[str, str], keys: tuple[str, ...] = ()) -> Any:
    """The extravars with every controller file named in them replaced by its copy on the executor (`where`)."""
    if isinstance(extravars, Mapping):
        return {k: rewrite_files(v, where, (*keys, str(k))) for k, v in extravars.items()}
    if isinstance(extravars, list | tuple):
        return [rewrite_files(v, where, keys) for v in extravars]
    if isinstance(extravars, str) and _names_file(keys) and extravars in where:
        return where[extravars]
    return extravars


def executor_extravars(extravars: Mapping[str, Any], executor: Host, nodes: list[str]) -> dict[str, Any]:
    """An executor's share of a playbook's extravars: only its nodes' phase specs; the user lab's reads log in
    as is the executor's (the inner ssh runs there)."""
    out = dict(extravars)
    for key in PER_NODE:
        if isinstance(out.get(key), Mapping):
            out[key] = {n: s for n, s in out[key].items() if n in nodes}
    if "lab_controller_user" in out and executor.vars.get("ansible_user"):
        out["lab_controller_user"] = str(executor.vars["ansible_user"])
    return out


def job_timeout(extravars: Mapping[str, Any]) -> int | None:
    """ansible-runner's job timeout for a worker (phase.yml only): the longest phase spec's time, two reboots and
    a margin. The worker's own runner then ends an ansible-playbook whose controller link died, instead of it
    driving the nodes on for hours (an orphan: the worker itself dies only on its next write)."""
    specs = extravars.get("lab_phase_specs")
    if not isinstance(specs, Mapping) or not specs:
        return None
    longest = max((int(s.get("timeout") or 0) + 2 * int(s.get("reboot_timeout") or 0) for s in specs.values()
                   if isinstance(s, Mapping)), default=0)
    return longest + JOB_MARGIN


def file_digest(path: str) -> str:
    """A file's sha256 (hex), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(digest: str, name: str) -> str:
    """Where a controller file lives on an executor, relative to its login user's home."""
    return f"{CACHE_DIR}/{digest}/{name}"


# The executor's home, then every wanted cache path that is missing (paths relative to the home).
_MISSING = 'cd && printf "%s\\n" "$HOME" && for f do test -f "$f" || printf "%s\\n" "$f"; done'
# One file from stdin to its cache path: written to .tmp, renamed when complete (a cut upload leaves no file).
_PUT = 'cd && mkdir -p "$(dirname "$1")" && cat > "$1.tmp" && mv -f "$1.tmp" "$1"'


def cache_files(executor: Host, paths: list[str], timeout: float = 600.0) -> dict[str, str]:
    """Put controller files in the executor's cache (only the missing ones); returns controller path ->
    absolute path on the executor. Raises PlaybookError (one line) when the executor does not take them."""
    if not paths:
        return {}
    wanted = {p: cache_path(file_digest(p), Path(p).name) for p in paths}
    done = run_remote(executor, ["sh", "-c", _MISSING, "sh", *wanted.values()], timeout=60)
    lines = done.stdout.decode(errors="replace").splitlines()
    if done.returncode != 0 or not lines:
        raise PlaybookError(f"executor {executor.name}: cannot look into its file cache: {_said(done)}", None,
                            "check that the executor answers over SSH")
    home, missing = lines[0], set(lines[1:])
    for path, remote in wanted.items():
        if remote in missing:
            with open(path, "rb") as fh:
                put = run_remote(executor, ["sh", "-c", _PUT, "sh", remote], timeout=timeout, stdin=fh)
            if put.returncode != 0:
                raise PlaybookError(f"executor {executor.name}: cannot copy {Path(path).name} to {remote}: "
                                    f"{_said(put)}", None, "check the executor's free space and home folder")
    return {p: f"{home.rstrip('/')}/{r}" for p, r in wanted.items()}


def _said(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.decode(errors="replace").splitlines()[-2:]
    return " / ".join(line.strip() for line in lines if line.strip())[:300] or f"exit {done.returncode}"


# ---- before a campaign ----------------------------------------------------------------------------

def check_executor(executor: Host, timeout: float = 60.0) -> str:
    """Ask an execution node for its ansible-runner worker (the controller's major.minor) and its
    ansible-playbook (ansible-core >= 2.17), and make its folder for lab's SSH masters. Returns
    "ansible-runner V, ansible-core V"; a missing or unusable one is a ConfigError naming the executor and
    the fix (exit 2)."""
    where = f"executor {executor.name}"
    try:
        runner = check_worker(runner_argv(executor), where, timeout=timeout)
    except PlaybookError as exc:
        raise ConfigError(exc.what, exc.where, exc.hint) from None
    # also removes what workers that died left behind (ssh.stale_workers_cleanup)
    script = (f'cd && mkdir -p {EXECUTOR_CONTROL_DIR.removeprefix("~/")} {CACHE_DIR} && '
              f'{{ {stale_workers_cleanup(RUNNER_DIR)}; }} && PATH="${{1:+$1:}}$PATH" exec ansible-playbook --version')
    try:
        done = run_remote(executor, ["sh", "-c", script, "sh", runner_bindir(executor)], timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{where}: no answer to `ansible-playbook --version` within {timeout:.0f} s", None,
                          "check the executor") from None
    match = re.search(r"core (\d+)\.(\d+)\.?(\S*)\]", done.stdout.decode(errors="replace"))
    if done.returncode != 0 or match is None:
        raise ConfigError(f"{where}: no ansible-playbook there ({_said(done)})", None,
                          f"install ansible-core >= {'.'.join(map(str, MIN_ANSIBLE_CORE))} on {where} "
                          f"(it comes with ansible-runner's pip install ansible-core)")
    core = (int(match.group(1)), int(match.group(2)))
    version = f"{core[0]}.{core[1]}{'.' + match.group(3) if match.group(3) else ''}"
    if core < MIN_ANSIBLE_CORE:
        raise ConfigError(f"{where}: ansible-core {version} is too old for lab's playbooks", None,
                          f"install ansible-core >= {'.'.join(map(str, MIN_ANSIBLE_CORE))} on {where}")
    return f"ansible-runner {runner}, ansible-core {version}"


def tidy_executor(executor: Host, timeout: float = 30.0) -> bool:
    """Remove what dead workers left on an execution node (ssh.stale_workers_cleanup); best effort: False when it
    does not answer (the next check of it tries again)."""
    try:
        done = run_remote(executor, ["sh", "-c", stale_workers_cleanup(RUNNER_DIR)], timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _hosts(plan: Plan, nodes: list[str]) -> list[Host]:
    """The inventory's hosts of these nodes, in their order."""
    return [plan.inventory.hosts[n] for n in nodes if n in plan.inventory.hosts]


def executors_of(hosts: list[Host]) -> dict[str, Host]:
    """The execution nodes these nodes are reached through, by name, in first-seen order."""
    return {h.via.name: h.via for h in hosts if h.via is not None}


def check_credentials(hosts: list[Host], inventory: str | None = None) -> None:
    """A node behind an execution node whose inventory holds a credential (a become password, a vaulted
    value) is a one-line ConfigError: credentials never travel to an executor (its worker's inventory has
    none), and Ansible there would fail later with "Missing sudo password"."""
    for host in hosts:
        if host.via is not None and host.withheld:
            raise ConfigError(f"host {host.name} is reached through execution node {host.via.name}, but its "
                              f"{', '.join(host.withheld)} would stay on the controller (credentials never travel "
                              f"to an executor)", inventory,
                              f"give {host.name}'s login user passwordless sudo (a Pi's default) and drop the "
                              f"variable, or run {host.name} from the controller (no lab_executor)")


def check_executors(hosts: list[Host], inventory: str | None = None) -> dict[str, str]:
    """check_credentials, then check_executor for every executor these nodes use; the first that fails raises
    (one line, exit 2)."""
    check_credentials(hosts, inventory)
    return {name: check_executor(executor) for name, executor in executors_of(hosts).items()}


# ---- the adapter ----------------------------------------------------------------------------------

class StreamingExecutor(AnsibleExecutor):
    """AnsibleExecutor whose nodes behind execution nodes run through `ansible-runner worker` there, one
    thread per executor (and one for the controller's own nodes); the same results either way."""

    def __init__(self, keepalive_seconds: int = KEEPALIVE_SECONDS, idle_timeout: float = IDLE_TIMEOUT):
        self.keepalive_seconds = keepalive_seconds
        self.idle_timeout = idle_timeout
        self._cached: dict[tuple[str, str], str] = {}  # (executor, controller path) -> its copy there
        self._lock = threading.Lock()

    def prepare(self, plan: Plan, campaign: str, nodes: list[str]) -> dict[str, NodeResult]:
        """Check every executor the nodes use first: a missing or unusable worker stops the campaign here,
        before the store holds anything (ConfigError, exit 2)."""
        check_executors(_hosts(plan, nodes), str(plan.inventory.source))
        return super().prepare(plan, campaign, nodes)

    def release(self, plan: Plan, campaign: str, nodes: list[str]) -> None:
        """Release the nodes, then remove what dead workers left on their execution nodes (a campaign that lost
        an executor is released by `lab resume` once it is back, which is when its dead worker's folder goes)."""
        try:
            super().release(plan, campaign, nodes)
        finally:
            for executor in executors_of(_hosts(plan, nodes)).values():
                tidy_executor(executor)

    def play(self, playbook: str, inventory: Inventory, nodes: list[str], extravars: dict) -> PlaybookResult:
        groups: dict[str | None, list[str]] = {}
        for node in nodes:
            host = inventory.hosts.get(node)
            groups.setdefault(host.executor if host is not None else None, []).append(node)
        if list(groups) in ([], [None]):
            return super().play(playbook, inventory, nodes, extravars)
        results: dict[str | None, PlaybookResult] = {}
        errors: list[BaseException] = []

        def one(executor: str | None, members: list[str]) -> None:
            try:
                if executor is None:
                    results[executor] = super(StreamingExecutor, self).play(playbook, inventory, members, extravars)
                else:
                    results[executor] = self._remote(playbook, inventory, inventory.executors[executor], members,
                                                     extravars)
            except BaseException as exc:  # raised again in the caller's thread, after every group ended
                errors.append(exc)

        # daemons: a Ctrl-C in the caller ends lab; each worker (own session) is stopped by its watchdog or ssh
        threads = [threading.Thread(target=one, args=(executor, members), name=f"lab-play-{executor or 'local'}",
                                    daemon=True) for executor, members in groups.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return merge_results(list(results.values()))

    def _remote(self, playbook: str, inventory: Inventory, executor: Host, nodes: list[str],
                extravars: dict) -> PlaybookResult:
        """One playbook on one executor's nodes; a lost executor gives its nodes "lost", keeping what arrived."""
        where = f"executor {executor.name}"
        travelling = executor_extravars(extravars, executor, nodes)
        try:
            travelling = rewrite_files(travelling, self._cache(executor, controller_files(travelling)))
        except (PlaybookError, subprocess.TimeoutExpired) as exc:  # it does not take the files: as good as lost
            said = exc.what.removeprefix(f"{where}: ") if isinstance(exc, PlaybookError) else f"no answer within {exc.timeout} s"
            why = f"{where} lost: {said}"
            return PlaybookResult("lost", -1, {}, {n: why for n in nodes})
        with tempfile.TemporaryDirectory(prefix="lab-subset-") as folder:
            subset = Path(folder) / "hosts.yml"
            subset.write_text(yaml.safe_dump(subset_inventory(inventory, nodes), sort_keys=False))
            subset.chmod(0o600)
            job = f"{RUNNER_DIR}/{Path(playbook).stem}-{uuid.uuid4().hex[:16]}"
            try:
                return run_playbook_streamed(playbook, subset, worker_argv(executor, job, self.keepalive_seconds),
                                             extravars=travelling, limit=",".join(nodes), forks=len(nodes),
                                             timeout=job_timeout(travelling), idle_timeout=self.idle_timeout,
                                             where=where)
            except WorkerLostError as exc:
                partial = exc.partial or PlaybookResult("lost", -1, {})
                why = f"{where} lost: {exc.what.split(': ', 1)[-1]}"
                return PlaybookResult("lost", -1, {n: h for n, h in partial.hosts.items() if n in nodes},
                                      {n: why for n in nodes})

    def _cache(self, executor: Host, paths: list[str]) -> dict[str, str]:
        """Controller files on this executor (copied once per process and file)."""
        with self._lock:
            todo = [p for p in paths if (executor.name, p) not in self._cached]
        if todo:
            placed = cache_files(executor, todo)
            with self._lock:
                self._cached.update({(executor.name, p): r for p, r in placed.items()})
        with self._lock:
            return {p: self._cached[(executor.name, p)] for p in paths}


def merge_results(results: list[PlaybookResult]) -> PlaybookResult:
    """One result of several groups' runs of a playbook: every host, every loss; the worst status."""
    hosts: dict = {}
    lost: dict[str, str] = {}
    for result in results:
        hosts.update(result.hosts)
        lost.update(result.lost)
    bad = [r for r in results if r.status != "successful"]
    status = bad[0].status if bad else "successful"
    rc = max((r.rc for r in results), default=0) if not lost else max(1, max((r.rc for r in results), default=1))
    return PlaybookResult(status, rc, hosts, lost)

