"""Property tests are the same in every CI run and keep exploring on a developer's machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import settings

PROJECT = Path(__file__).resolve().parents[2]
PROBE = '''
import os

from hypothesis import given, strategies as st

@given(st.floats())
def test_probe(x):
    with open(os.environ["SEEN"], "a") as out:
        out.write(repr(x) + "\\n")
'''


def test_active_profile_matches_the_environment():
    assert settings.default.database is None  # nothing left behind in the project
    assert settings.default.derandomize is bool(os.environ.get("CI") or os.environ.get("LAB_HYPOTHESIS_PROFILE") == "ci")


def _examples(tmp_path: Path, ci: bool, tag: str) -> list[str]:
    work = tmp_path / tag
    (work / "tests").mkdir(parents=True)
    (work / "tests" / "test_probe.py").write_text(PROBE)
    (work / "tests" / "conftest.py").write_text((PROJECT / "tests" / "conftest.py").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "LAB_HYPOTHESIS_PROFILE")}
    env["PYTHONPATH"], env["SEEN"] = str(PROJECT), str(work / "seen.txt")
    if ci:
        env["CI"] = "true"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_probe.py"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return (work / "seen.txt").read_text().splitlines()


def test_ci_runs_the_same_examples_and_a_developer_new_ones(tmp_path):
    first, second = _examples(tmp_path, True, "ci1"), _examples(tmp_path, True, "ci2")
    assert first == second and len(first) >= 50
    dev1, dev2 = _examples(tmp_path, False, "dev1"), _examples(tmp_path, False, "dev2")
    assert dev1 != dev2
