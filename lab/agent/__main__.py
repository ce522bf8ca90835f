"""`python3 -m lab.agent run SPEC.json`: run one phase on this node (what the lab_agent role deploys)."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys

from lab.contract import AgentSpec, ContractError

from .records import RecordLog
from .steps import Agent


def main(argv=None) -> int:
    """Run the phase described by a JSON spec; records go to WORKDIR/records.jsonl."""
    parser = argparse.ArgumentParser(prog="lab-agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one phase")
    run.add_argument("spec")
    args = parser.parse_args(argv)
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
    print(json.dumps({"phase": spec.phase, "status": status, "last_seq": log.seq}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
