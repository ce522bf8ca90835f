"""`lab nodes`' probe reports what is installed as dpkg has it (Debian revisions included), DKMS and holds."""

from __future__ import annotations

import os
import subprocess

from lab.remote import NODE_PROBE, parse_probe

FAKES = {
    "dpkg-query": "#!/bin/sh\nprintf 'ii  h10-hailort=5.1.1\\nii  python3-h10-hailort=5.1.1-1\\nrc  hailort=5.3.0\\n"
                  "ii  dkms=3.2.0-1\\n'\n",
    "dkms": "#!/bin/sh\necho 'hailo1x_pci/5.1.1, 6.12.47+rpt-rpi-2712, aarch64: installed'\necho 'other/1.0: added'\n",
    "apt-mark": "#!/bin/sh\nprintf 'h10-hailort\\npython3-h10-hailort\\n'\n",
}


def test_probe_reports_installed_versions(tmp_path):
    for name, text in FAKES.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    info = parse_probe(subprocess.run(["sh", "-c", NODE_PROBE], capture_output=True, text=True, env=env).stdout)
    assert info["packages"] == "h10-hailort=5.1.1 python3-h10-hailort=5.1.1-1 dkms=3.2.0-1"
    assert info["dkms"] == "hailo1x_pci/5.1.1, 6.12.47+rpt-rpi-2712, aarch64: installed;"
    assert info["held"] == "h10-hailort python3-h10-hailort"
    assert info["kernel"] == os.uname().release
