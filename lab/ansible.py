"""The only module that talks to ansible-runner: run a playbook on many nodes, collect per-host results."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

import ansible_runner
import yaml

from lab import resources
from lab.errors import PlaybookError, WorkerLostError


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
    lost: dict[str, str] = field(default_factory=dict)  # host -> why its execution node was lost mid-playbook

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


# ---- streaming: transmit here, `ansible-runner worker` anywhere (a local process, or over ssh), process here ----

# A worker's final status: anything else at the end of the stream means the worker was lost.
FINAL_STATUSES = ("successful", "failed", "timeout", "canceled")


def _streamed_envvars() -> dict[str, str]:
    """Environment of ansible-playbook on the worker: only what holds on any machine.

    No PATH (the worker's own finds ansible-playbook), no ANSIBLE_ROLES_PATH (ansible-runner's Worker.update_paths
    re-roots it under the worker's `roles/`, so roles come from the staged ansible.cfg's relative roles_path), no
    vault password file (a controller path, and a secret that stays on the controller).
    """
    return {
        # relative: found from the worker's cwd, its copy of the project (ansible-runner runs a playbook there)
        "ANSIBLE_CONFIG": "ansible.cfg",
        # as in _envvars: without it ansible-runner sets False and ssh would accept a changed host key
        "ANSIBLE_HOST_KEY_CHECKING": "True",
    }


def stage_private_data_dir(private: Path, playbook: Path, inventory: Path) -> tuple[Path, Path]:
    """Lay out what travels to a worker: project/ (ansible.cfg, playbooks, roles) and inventory/.

    Returns the playbook's and the inventory's paths inside `private`; a playbook outside lab's playbooks is
    copied beside them. The inventory's group_vars/ and host_vars/ folders travel with it.
    """
    data = resources.data_dir()
    project = private / "project"
    project.mkdir(parents=True)
    shutil.copy2(data / "ansible.cfg", project / "ansible.cfg")
    shutil.copytree(data / "playbooks", project / "playbooks")
    shutil.copytree(data / "roles", project / "roles")
    staged_playbook = project / "playbooks" / playbook.name
    if playbook.resolve() != (data / "playbooks" / playbook.name).resolve():
        shutil.copy2(playbook, staged_playbook)
    inv_dir = private / "inventory"
    inv_dir.mkdir()
    inventory = Path(inventory).resolve()
    if inventory.is_dir():
        shutil.copytree(inventory, inv_dir / inventory.name)
    else:
        shutil.copy2(inventory, inv_dir / inventory.name)
        for folder in ("group_vars", "host_vars"):
            if (inventory.parent / folder).is_dir():
                shutil.copytree(inventory.parent / folder, inv_dir / folder)
    return staged_playbook, inv_dir / inventory.name


class _WatchedStream:
    """A worker's stdout as ansible-runner's Processor reads it, noting when the last byte arrived."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self.last = time.monotonic()

    def _note(self, data: bytes) -> bytes:
        if data:
            self.last = time.monotonic()
        return data

    def readline(self, *args) -> bytes:
        return self._note(self._raw.readline(*args))

    def read(self, *args) -> bytes:
        return self._note(self._raw.read(*args))

    def readable(self) -> bool:
        return True

    # the rest of what ansible-runner's Base64IO asks of a stream it wraps (it never writes to or closes it)
    @property
    def closed(self) -> bool:
        return self._raw.closed

    def write(self, data: bytes) -> int:
        raise OSError("a worker's stream is read-only")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._raw.close()


def local_worker(keepalive_seconds: int = 30,
                 private_data_dir: str | Path | None = None) -> tuple[list[str], dict[str, str]]:
    """`ansible-runner worker` of this interpreter, with its ansible-playbook on PATH: the argv and environment.

    With `private_data_dir` the worker unpacks the job there and removes it before and after (`--delete`);
    without, in a temporary folder that a killed worker leaves behind."""
    bindir = str(Path(sys.executable).parent)
    argv = [sys.executable, "-m", "ansible_runner", "worker", "--keepalive-seconds", str(keepalive_seconds)]
    if private_data_dir is not None:
        argv += ["--private-data-dir", str(private_data_dir), "--delete"]
    return argv, {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def _stop(proc: subprocess.Popen) -> None:
    """End a worker and everything it started (its own session): a lost ssh or a hung local worker."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_playbook_streamed(
    playbook: str | Path,
    inventory: str | Path,
    worker: Sequence[str],
    *,
    extravars: dict[str, Any] | None = None,
    limit: str | None = None,
    forks: int | None = None,
    event_handler: Callable[[dict], None] | None = None,
    timeout: int | None = None,
    idle_timeout: float = 120.0,
    worker_env: dict[str, str] | None = None,
    where: str = "local worker",
) -> PlaybookResult:
    """Run one playbook through ansible-runner's streaming: transmit here, `worker` (an argv reading the job on
    stdin and writing events on stdout: `ansible-runner worker ...`, or the same over `ssh -T`), process here.

    Returns what run_playbook returns for the same playbook (the same per-host folding of the same events);
    never raises for host failures. A worker that ends without a final status, or that sends nothing (not even
    a keepalive) for `idle_timeout` seconds, raises WorkerLostError carrying the hosts folded so far.
    """
    path = Path(playbook)
    if not path.is_absolute():
        path = resources.playbooks_dir() / path
    if not path.exists():
        raise PlaybookError(f"no playbook {path}", hint="lab's playbooks ship in its package (lab/data/playbooks)")
    hosts: dict[str, HostResult] = {}
    private = Path(tempfile.mkdtemp(prefix="lab-stream-"))
    try:
        staged_playbook, staged_inventory = stage_private_data_dir(private / "job", path, Path(inventory))
        job = private / "job.stream"
        with open(job, "wb") as out:  # a real file: ansible-runner's stream_dir asks its output for a name
            ansible_runner.run(
                streamer="transmit", _output=out, private_data_dir=str(private / "job"),
                playbook=str(staged_playbook), inventory=str(staged_inventory),
                extravars=extravars or {}, limit=limit, forks=forks, envvars=_streamed_envvars(),
                timeout=timeout, quiet=True,
            )
        statuses: list[dict] = []
        stderr_path = private / "worker.stderr"
        try:
            with open(job, "rb") as stdin, open(stderr_path, "wb") as stderr:
                # its own session: a watchdog or a lost stream ends the worker and all it started, never us
                proc = subprocess.Popen(list(worker), stdin=stdin, stdout=subprocess.PIPE, stderr=stderr,
                                        env={**os.environ, **(worker_env or {})}, start_new_session=True)
        except OSError as exc:
            raise WorkerLostError(f"{where} lost during {path.name}: cannot start {worker[0]}: {exc.strerror or exc}",
                                  None, "install ansible-runner where the worker runs",
                                  partial=PlaybookResult(status="lost", rc=-1, hosts={})) from exc
        stream = _WatchedStream(proc.stdout)
        silent: list[float] = []
        done = threading.Event()

        def watchdog() -> None:
            while not done.wait(1.0):
                # whether or not the worker itself still runs: what it started may hold the stream open
                if time.monotonic() - stream.last > idle_timeout:
                    silent.append(idle_timeout)
                    _stop(proc)
                    return

        guard = threading.Thread(target=watchdog, name="lab-worker-watchdog", daemon=True)
        guard.start()
        try:
            ansible_runner.run(
                streamer="process", _input=stream, private_data_dir=str(private / "out"), quiet=True,
                event_handler=_on_event(hosts, event_handler),
                status_handler=lambda data, runner_config=None: statuses.append(dict(data)),
            )
        except BaseException:
            _stop(proc)  # our side failed (a caller's handler raised, Ctrl-C): the worker must not run on
            raise
        finally:
            done.set()
            proc.stdout.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _stop(proc)
                proc.wait()
        final = next((s for s in reversed(statuses) if s.get("status") in FINAL_STATUSES), None)
        if final is None or silent:
            explanation = next((s.get("job_explanation") for s in reversed(statuses) if s.get("job_explanation")), "")
            raise WorkerLostError(
                f"{where} lost during {path.name}: {_lost_detail(silent, explanation, proc.returncode, stderr_path)}",
                None, "check the execution node: ansible-runner installed, reachable, alive",
                partial=PlaybookResult(status="lost", rc=-1, hosts=hosts))
        status = final["status"]
        rc = _streamed_rc(private / "out", status)
        if status != "successful" and not hosts:
            raise PlaybookError(f"{path.name} did not run: {_stdout_tail(private / 'out') or status}", str(path),
                                "run it with ansible-playbook to see why")
        return PlaybookResult(status=status, rc=rc, hosts=hosts)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _lost_detail(silent: list[float], explanation: str, returncode: int | None, stderr_path: Path) -> str:
    """Why a worker's stream ended without a final status, in one line (ansible-runner's own words are long)."""
    if silent:
        why = f"no word from it for {silent[0]:g} s"
    elif not explanation or "empty line" in explanation or explanation.rstrip().endswith("b''"):
        # ansible-runner 2.4.3 says "Unexpected empty line"; 2.4.0 fails to parse the empty line b''
        why = "its stream ended without a final status"
    elif "JSON" in explanation:
        why = "its stream broke off in the middle of an event"
    else:
        why = " ".join(explanation.split())[:200]
    lines = stderr_path.read_text(errors="replace").splitlines()[-3:]
    tail = " / ".join(line.strip() for line in lines if line.strip())
    return f"{why} (exit {returncode}{'; ' + tail[:300] if tail else ''})"


def _streamed_rc(out: Path, status: str) -> int:
    """ansible-playbook's exit code, from the artifacts the worker streamed back (its `rc` file)."""
    for rc_file in sorted(out.glob("artifacts/**/rc")):
        text = rc_file.read_text().strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return 0 if status == "successful" else 1


def _stdout_tail(out: Path) -> str:
    """The last lines of the worker's ansible-playbook output, from the streamed artifacts."""
    for stdout in sorted(out.glob("artifacts/**/stdout")):
        return " / ".join(line.strip() for line in stdout.read_text(errors="replace").splitlines()[-3:] if line.strip())
    return ""


# ---- an execution node's ansible-runner: asked once before a campaign ----------------------------------------

# Oldest worker lab streams to: `ansible-runner worker --keepalive-seconds` came in 2.4.0 (Debian bookworm has 2.3.1).
MIN_WORKER = (2, 4)


def controller_runner_version() -> str:
    """This controller's ansible-runner version (the one that transmits and processes)."""
    return importlib.metadata.version("ansible-runner")


def check_worker(runner: Sequence[str], where: str, timeout: float = 30.0,
                 env: dict[str, str] | None = None) -> str:
    """Ask an execution node's ansible-runner (`runner`: the argv that starts it, e.g. over ssh) for its version;
    returns it, or raises PlaybookError in one line when the worker is missing or one this controller cannot
    talk to (another major.minor: transmit sends keyword arguments only the same release is sure to take)."""
    argv = [*runner, "worker", "--worker-info"]
    hint = f"install ansible-runner {controller_runner_version()} on {where} (the controller's version)"
    try:
        done = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout,
                              env={**os.environ, **(env or {})}, check=False)
    except subprocess.TimeoutExpired:
        raise PlaybookError(f"{where}: its ansible-runner did not answer within {timeout:.0f} s", None,
                            f"check that {where} is up and not overloaded (ssh to it), then run again") from None
    except OSError as exc:
        raise PlaybookError(f"{where}: cannot ask its ansible-runner: {exc}", None, hint) from exc
    try:
        info = yaml.safe_load(done.stdout.decode(errors="replace"))
    except yaml.YAMLError:
        info = None
    version = str(info.get("runner_version", "")) if isinstance(info, dict) else ""
    if done.returncode != 0 or not version:
        lines = done.stderr.decode(errors="replace").splitlines()[-2:]
        said = " / ".join(line.strip() for line in lines if line.strip())
        raise PlaybookError(f"{where}: no ansible-runner worker answered (exit {done.returncode}"
                            f"{'; ' + said[:200] if said else ''})", None, hint)
    ours = controller_runner_version()
    theirs = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if theirs < MIN_WORKER or theirs != tuple(int(p) for p in ours.split(".")[:2]):
        raise PlaybookError(f"{where}: ansible-runner {version} cannot work for this controller's {ours} "
                            f"(the same major.minor, at least {'.'.join(map(str, MIN_WORKER))}, is needed)", None, hint)
    return version
