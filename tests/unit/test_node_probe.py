"""`lab nodes`' probe reports what is installed as dpkg has it (Debian revisions included), DKMS and holds."""

from __future__ import annotations

import os
import subprocess

from lab.probe import NODE_PROBE, parse_probe
from tests.conftest import FIXTURES

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


IDENTIFY = """#!/bin/sh
case "$*" in
  *--extended*) cat "$LAB_FAKE_IDENTIFY" ;;
  *) exit 1 ;;
esac
"""


def test_probe_names_the_pi_and_the_hat(tmp_path):
    """`lab nodes` shows the Pi (devicetree) and the HAT (the unit key its chip gives, serial, SoC ID)."""
    from lab.inventory import Host
    from lab.probe import describe_node, host_probe

    (tmp_path / "hailortcli").write_text(IDENTIFY)
    (tmp_path / "hailortcli").chmod(0o755)
    dt = tmp_path / "dt dir"  # quoted into the probe, never split
    dt.mkdir()
    (dt / "serial-number").write_bytes(b"0123456789abcdef\x00")
    (dt / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    case = FIXTURES / "parsers" / "identify" / "inputs" / "identify_extended_h8_4.23_lcs_no_newline.txt"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "LAB_FAKE_IDENTIFY": str(case)}
    probe = host_probe(Host("pi-01", "127.0.0.1", {"lab_devicetree_dir": str(dt)}))
    row = describe_node(parse_probe(subprocess.run(["sh", "-c", probe], capture_output=True, text=True, env=env).stdout))
    soc = "37F2270C0C0C363FA0360903C7B5A59243525FDEC531215A1B76FE2901893FDE"
    assert row["pi"] == {"serial": "0123456789abcdef", "model": "Raspberry Pi 5 Model B Rev 1.0"}
    assert (row["hat"]["unit"], row["hat"]["soc_id"], row["hat"]["serial"]) == (f"soc:{soc}", soc, None)
    assert (row["architecture"], row["firmware"]) == ("HAILO8", "4.23.0")
    env["LAB_FAKE_IDENTIFY"] = str(case.with_name("identify_h8_4.20_hat.txt"))
    row = describe_node(parse_probe(subprocess.run(["sh", "-c", probe], capture_output=True, text=True, env=env).stdout))
    assert row["hat"]["unit"] is None and row["hat"]["serial"] is None  # <N/A>: unidentified, never "<N/A>"


def test_probe_asks_the_hosts_own_vcgencmd(tmp_path):
    """A virtual node's `lab_vcgencmd` (the emulator's) answers get_throttled, as a Pi's vcgencmd does."""
    from lab.inventory import Host
    from lab.probe import host_probe

    (tmp_path / "emu-vcgencmd").write_text("#!/bin/sh\n[ \"$1\" = get_throttled ] && echo throttled=0x50005\n")
    (tmp_path / "emu-vcgencmd").chmod(0o755)
    host = Host(name="node1", address="127.0.0.1", vars={"lab_vcgencmd": str(tmp_path / "emu-vcgencmd")})
    info = parse_probe(subprocess.run(["sh", "-c", host_probe(host)], capture_output=True, text=True).stdout)
    assert info["throttled"] == "0x50005"
