"""The engine's agent files over SSH: the tail of a campaign's record file and a tar of its artifacts."""

from __future__ import annotations

import io
import subprocess
import tarfile

from lab.contract import AGENT_WORKDIR
from lab.inventory import Host
from lab.ssh import Masters


class SshAgentFiles:
    """Reads `AGENT_WORKDIR/<campaign>/` on each node as the login user, one master connection per node."""

    def __init__(self, campaign: str, hosts: list[Host]):
        self.campaign = campaign
        self.masters = Masters(hosts)

    def path(self, name: str = "records.jsonl") -> str:
        return f"{AGENT_WORKDIR}/{self.campaign}/{name}"

    def read_records(self, host: Host, offset: int, timeout: float) -> bytes | None:
        try:
            proc = self.masters.run(host, ["sh", "-c", 'test -f "$1" && tail -c +"$2" "$1" || true', "sh",
                                           self.path(), str(offset + 1)], timeout)
        except subprocess.TimeoutExpired:
            return None
        return proc.stdout if proc.returncode == 0 else None

    def fetch(self, host: Host, names: list[str], timeout: float) -> dict[str, bytes] | None:
        try:
            proc = self.masters.run(host, ["tar", "-C", self.path("artifacts"), "-cf", "-", "--", *names], timeout)
        except subprocess.TimeoutExpired:
            return None
        if not proc.stdout:  # unreachable, or tar found none of them: nothing to read
            return None
        out = {}
        with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:") as tar:
            for member in tar.getmembers():
                fh = tar.extractfile(member)
                if fh is not None and member.name in names:
                    out[member.name] = fh.read()
        return out

    def boot(self, host: Host, timeout: float) -> tuple[str, float] | None:
        try:
            proc = self.masters.run(host, ["cat", "/proc/sys/kernel/random/boot_id", "/proc/uptime"], timeout)
        except subprocess.TimeoutExpired:
            return None
        lines = proc.stdout.decode(errors="replace").split("\n") if proc.returncode == 0 else []
        try:
            return lines[0].strip(), float(lines[1].split()[0])
        except (IndexError, ValueError):
            return None

    def close(self) -> None:
        self.masters.close()
