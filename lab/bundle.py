"""The node agent as one zipapp file (`python3 lab-agent.pyz run SPEC`), so deploying it is a single copy."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent / "agent"
CONTRACT = Path(__file__).resolve().parent / "contract.py"  # the phase spec and record format, shared with the controller
MAIN = "import runpy\nrunpy.run_module('lab.agent', run_name='__main__', alter_sys=True)\n"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same bytes (idempotent copy)


def bundle_bytes() -> bytes:
    """The zipapp's bytes: lab/__init__.py, lab/contract.py, lab/agent/*.py and a __main__ that runs the agent."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        entries = [("__main__.py", MAIN.encode()), ("lab/__init__.py", b'"""lab (node agent only)."""\n'),
                   ("lab/contract.py", CONTRACT.read_bytes())]
        entries += [(f"lab/agent/{p.name}", p.read_bytes()) for p in sorted(AGENT_DIR.glob("*.py"))]
        for name, data in entries:
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return b"#!/usr/bin/env python3\n" + buf.getvalue()


def build_bundle(cache: Path | None = None) -> Path:
    """Write the zipapp (once per content) and return its path."""
    data = bundle_bytes()
    cache = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lab"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"lab-agent-{hashlib.sha256(data).hexdigest()[:12]}.pyz"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".lab-agent-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return path
