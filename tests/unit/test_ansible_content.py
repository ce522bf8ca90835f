"""Ansible content stays lint-clean (production profile) and playbooks parse."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


def test_ansible_lint_production_profile():
    lint = Path(sys.executable).parent / "ansible-lint"
    if not lint.exists() and shutil.which("ansible-lint") is None:
        pytest.skip("ansible-lint is not installed")
    proc = subprocess.run([str(lint if lint.exists() else "ansible-lint"), "--profile", "production", "--nocolor",
                           "playbooks", "roles"], cwd=PROJECT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in proc.stderr + proc.stdout
