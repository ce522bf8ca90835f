"""lab.ansible.run_playbook_streamed: a playbook through ansible-runner's transmit -> worker -> process.

The worker is a real `ansible-runner worker` process on this machine (the same argv later runs over ssh on an
execution node); the hosts are `localhost`-style fakes with ansible_connection=local, so no SSH and no fleet.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.ansible import (PlaybookResult, check_worker, controller_runner_version, local_worker, run_playbook,
                         run_playbook_streamed)
from lab.errors import PlaybookError, WorkerLostError

# Two fake hosts on this machine: alpha does everything, beta fails a task (ignore_errors false).
INVENTORY = f"""\
all:
  hosts:
    alpha:
      ansible_connection: local
      ansible_python_interpreter: {sys.executable}
    beta:
      ansible_connection: local
      ansible_python_interpreter: {sys.executable}
"""

PLAYBOOK = """\
- name: A tiny phase
  hosts: all
  gather_facts: false
  tasks:
    - name: Report a fact
      ansible.builtin.set_fact:
        lab_seen: "{{ inventory_hostname }}-seen"

    - name: Change something
      ansible.builtin.command:
        argv: ["true"]
      changed_when: true

    - name: A failure that is ignored
      ansible.builtin.fail:
        msg: ignored on alpha
      ignore_errors: true
      when: inventory_hostname == 'alpha'

    - name: Fail on beta
      ansible.builtin.fail:
        msg: beta says no
      when: inventory_hostname == 'beta'

    - name: Report a fact after the failure
      ansible.builtin.set_fact:
        lab_after: "{{ 40 + 2 }}"
"""

# Where roles come from and what host-key policy ansible-playbook runs with, as the worker sees them.
CONFIG_PLAYBOOK = """\
- name: Report the worker's config
  hosts: alpha
  gather_facts: false
  tasks:
    - name: Report roles path and host-key policy
      ansible.builtin.set_fact:
        lab_roles_path: "{{ lookup('ansible.builtin.config', 'DEFAULT_ROLES_PATH') }}"
        lab_host_key_checking: "{{ lookup('ansible.builtin.config', 'HOST_KEY_CHECKING') }}"
        lab_playbook_dir: "{{ playbook_dir }}"
"""

# A worker that dies mid-stream: relays the real worker's output until the first task result plus a few bytes
# of the next line, then kills the worker and itself (a lost ssh, a crashed execution node).
DYING_WORKER = """\
import os, signal, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
seen_ok = False
for line in child.stdout:
    if seen_ok:
        os.write(1, line[:40])
        os.kill(child.pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    os.write(1, line)
    seen_ok = seen_ok or b'"runner_on_ok"' in line
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    # lab's staging folder and any worker's own temporary folder stay under tmp_path
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return write(tmp_path / "hosts.yml", INVENTORY), write(tmp_path / "tiny.yml", PLAYBOOK)


def streamed(playbook, inventory, **kwargs) -> PlaybookResult:
    folder = Path(playbook).parent / f"worker-{time.monotonic_ns()}"
    argv, env = local_worker(keepalive_seconds=1, private_data_dir=folder)
    return run_playbook_streamed(playbook, inventory, argv, worker_env=env, **kwargs)


def test_streamed_run_folds_the_same_per_host_results_as_a_local_run(fakes):
    inventory, playbook = fakes
    events: list[str] = []

    local = run_playbook(playbook, inventory)
    remote = streamed(playbook, inventory, event_handler=lambda e: events.append(e.get("event", "")))

    assert remote.hosts == local.hosts
    assert (remote.status, remote.rc) == (local.status, local.rc) == ("failed", 2)
    assert remote.failed_hosts == ["beta"]
    assert remote.hosts["alpha"].facts == {"lab_seen": "alpha-seen", "lab_after": 42}
    assert remote.hosts["alpha"].changed == 1 and not remote.hosts["alpha"].failed
    assert remote.hosts["beta"].messages == ["Fail on beta: beta says no"]
    # the caller's handler sees the events as in a local run (live progress), keepalives never reach it
    assert "runner_on_ok" in events and "playbook_on_stats" in events and "keepalive" not in events


def test_two_workers_side_by_side_from_threads(fakes):
    """As the executor adapter will run one worker per execution node, each from its own thread."""
    inventory, playbook = fakes
    with ThreadPoolExecutor(max_workers=2) as pool:
        alpha, beta = pool.map(lambda host: streamed(playbook, inventory, limit=host), ["alpha", "beta"])
    assert list(alpha.hosts) == ["alpha"] and alpha.status == "successful"
    assert list(beta.hosts) == ["beta"] and beta.failed_hosts == ["beta"]


def test_a_limit_extravars_and_the_inventorys_group_vars_travel_with_the_job(tmp_path, fakes):
    inventory, _ = fakes
    (tmp_path / "group_vars").mkdir()
    write(tmp_path / "group_vars" / "all.yml", "lab_from_group_vars: 7\n")
    playbook = write(tmp_path / "vars.yml", """\
        - name: Report what arrived
          hosts: all
          gather_facts: false
          tasks:
            - name: Report extravars and group vars
              ansible.builtin.set_fact:
                lab_seen: "{{ lab_extra }}/{{ lab_from_group_vars }}"
        """)
    result = streamed(playbook, inventory, limit="alpha", extravars={"lab_extra": "x"})
    assert list(result.hosts) == ["alpha"] and (result.status, result.rc) == ("successful", 0)
    assert result.hosts["alpha"].facts == {"lab_seen": "x/7"}


def test_the_worker_runs_the_staged_project_with_host_keys_checked(tmp_path, fakes):
    inventory, _ = fakes
    result = streamed(write(tmp_path / "config.yml", CONFIG_PLAYBOOK), inventory)
    facts = result.hosts["alpha"].facts
    # the worker's own copy of lab's roles (the staged ansible.cfg's roles_path), not the controller's folder
    assert [Path(p).parts[-2:] for p in facts["lab_roles_path"]] == [("project", "roles")]
    assert not facts["lab_roles_path"][0].startswith(str(Path(__file__).parents[2]))
    assert Path(facts["lab_playbook_dir"]).parts[-2:] == ("project", "playbooks")
    assert facts["lab_host_key_checking"] is True


def test_a_worker_that_dies_mid_stream_is_a_lost_worker_with_what_arrived(tmp_path, fakes):
    inventory, playbook = fakes
    argv, env = local_worker(keepalive_seconds=1)
    dying = [sys.executable, str(write(tmp_path / "dying.py", DYING_WORKER)), *argv]
    start = time.monotonic()
    with pytest.raises(WorkerLostError) as lost:
        run_playbook_streamed(playbook, inventory, dying, worker_env=env, where="executor rack1")
    assert time.monotonic() - start < 60
    assert str(lost.value).startswith(
        "executor rack1 lost during tiny.yml: its stream broke off in the middle of an event (exit -9)")
    assert isinstance(lost.value, PlaybookError)
    partial = lost.value.partial
    assert partial.status == "lost"
    assert sum(h.ok for h in partial.hosts.values()) == 1  # the one task result that arrived


def test_a_failing_event_handler_stops_the_worker_and_is_raised(fakes):
    inventory, playbook = fakes

    def broken(event: dict) -> None:
        if event.get("event") == "runner_on_ok":
            raise RuntimeError("progress display broke")

    with pytest.raises(RuntimeError, match="progress display broke"):
        streamed(playbook, inventory, event_handler=broken)


def test_a_silent_worker_is_stopped_after_the_idle_timeout(tmp_path, fakes):
    inventory, playbook = fakes
    # reads the job, then says nothing (no keepalive) and never ends: a hung node or a half-open connection
    silent = [sys.executable, "-c", "import sys, time; sys.stdin.buffer.read(); time.sleep(600)"]
    start = time.monotonic()
    with pytest.raises(WorkerLostError,
                       match=r"^local worker lost during tiny.yml: no word from it for 2 s \(exit -9\)"):
        run_playbook_streamed(playbook, inventory, silent, idle_timeout=2)
    assert time.monotonic() - start < 20


def test_keepalives_carry_a_worker_through_a_long_silent_task(tmp_path, fakes):
    inventory, _ = fakes
    # a task silent for twice the idle timeout: the worker's keepalive (every 1 s) keeps it from being stopped
    playbook = write(tmp_path / "quiet.yml", """\
        - name: A long quiet task
          hosts: alpha
          gather_facts: false
          tasks:
            - name: Say nothing for 5 s
              ansible.builtin.command:
                argv: [sleep, "5"]
              changed_when: false
        """)
    result = streamed(playbook, inventory, idle_timeout=2.5)
    assert (result.status, result.hosts["alpha"].ok) == ("successful", 1)


def test_a_worker_without_ansible_runner_is_lost_with_its_words(fakes):
    inventory, playbook = fakes
    # as `ssh -T executor ansible-runner worker` ends on a node without ansible-runner
    missing = ["sh", "-c", "cat >/dev/null; echo 'sh: 1: ansible-runner: not found' >&2; exit 127"]
    with pytest.raises(WorkerLostError) as lost:
        run_playbook_streamed(playbook, inventory, missing)
    assert str(lost.value).startswith(
        "local worker lost during tiny.yml: its stream ended without a final status (exit 127; ")
    assert "ansible-runner: not found" in str(lost.value)


def test_a_worker_program_that_does_not_exist_is_lost(fakes):
    inventory, playbook = fakes
    with pytest.raises(WorkerLostError, match="cannot start /nonexistent/ansible-runner"):
        run_playbook_streamed(playbook, inventory, ["/nonexistent/ansible-runner", "worker"])


# ---- check_worker: an execution node's ansible-runner, asked before a campaign ----------------------------------

def fake_runner(tmp_path: Path, body: str) -> list[str]:
    """An `ansible-runner` that answers `worker --worker-info` as the given shell body does."""
    script = tmp_path / "ansible-runner"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return [str(script)]


def test_check_worker_returns_a_matching_workers_version():
    assert check_worker([sys.executable, "-m", "ansible_runner"], "executor rack1") == controller_runner_version()


@pytest.mark.parametrize("version", ["2.3.1", "3.4.0"])
def test_check_worker_refuses_a_version_it_cannot_talk_to(tmp_path, version):
    runner = fake_runner(tmp_path, f"echo '{{cpu_count: 4, errors: [], runner_version: {version}}}'")
    with pytest.raises(PlaybookError) as err:
        check_worker(runner, "executor rack1")
    ours = controller_runner_version()
    assert err.value.what == (f"executor rack1: ansible-runner {version} cannot work for this controller's {ours} "
                              "(the same major.minor, at least 2.4, is needed)")
    assert err.value.hint == f"install ansible-runner {ours} on executor rack1 (the controller's version)"


def test_check_worker_names_a_missing_ansible_runner(tmp_path):
    runner = fake_runner(tmp_path, "echo 'sh: 1: ansible-runner: not found' >&2; exit 127")
    with pytest.raises(PlaybookError, match=r"^executor rack1: no ansible-runner worker answered "
                                            r"\(exit 127; sh: 1: ansible-runner: not found\)"):
        check_worker(runner, "executor rack1")
    with pytest.raises(PlaybookError, match="^executor rack1: cannot ask its ansible-runner: "):
        check_worker(["/nonexistent/ansible-runner"], "executor rack1")


def test_check_worker_names_an_executor_that_does_not_answer_in_time(tmp_path):
    runner = fake_runner(tmp_path, "exec sleep 30")
    with pytest.raises(PlaybookError) as err:
        check_worker(runner, "executor rack1", timeout=1.0)
    assert err.value.what == "executor rack1: its ansible-runner did not answer within 1 s"
    assert err.value.hint == "check that executor rack1 is up and not overloaded (ssh to it), then run again"
