"""`python3 -m lab.agent run SPEC.json [--spec-stdin]`: run one phase on this node (what the lab_agent role deploys)."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys

from lab.contract import AgentSpec, ContractError

from .records import RecordLog, node_facts
from .steps import Agent


def main(argv=None) -> int:
    """Run the phase described by a JSON spec; records go to WORKDIR/records.jsonl."""
    parser = argparse.ArgumentParser(prog="lab-agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one phase")
    run.add_argument("spec")
    run.add_argument("--spec-stdin", action="store_true",
                     help="read the spec from stdin and write it to SPEC first (one Ansible task, not two)")
    args = parser.parse_args(argv)
    if args.spec_stdin:
        data = json.load(sys.stdin)
        write_spec(args.spec, data)
    else:
        with open(args.spec) as fh:
            data = json.load(fh)
    try:
        spec = AgentSpec.from_json(data)
    except ContractError as exc:  # a controller and agent of different versions: say which field, not a traceback
        print("lab-agent: error: %s: %s" % (args.spec, exc), file=sys.stderr)
        return 2
    workdir = os.path.dirname(os.path.abspath(args.spec))
    # One phase at a time per campaign directory, even if a controller retries.
    lock = open(os.path.join(workdir, "agent.lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    log = RecordLog(os.path.join(workdir, "records.jsonl"))
    try:
        agent = Agent(spec, log, workdir)
        agent.resume_from(log.existing)
        status = agent.run_phase()
    finally:
        log.close()
    # boot_id: the boot the phase ended in, read by the controller from this line (no extra Ansible task)
    print(json.dumps({"phase": spec.phase, "status": status, "last_seq": log.seq, "boot_id": node_facts()["boot_id"]}))
    return 0


def write_spec(path: str, data: dict) -> None:
    """The spec as the controller sent it, kept beside the records (root's only, 0600), replaced atomically."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # a leftover .tmp of another mode is narrowed too
        json.dump(data, fh, indent=4, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
