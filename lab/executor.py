"""The engine's executor over ansible-runner: prepare.yml, phase.yml and release.yml on many nodes at once."""

from __future__ import annotations

import getpass
import hashlib
from collections.abc import Mapping

from lab.ansible import PlaybookResult, run_playbook
from lab.bundle import build_bundle
from lab.controller import controller_name
from lab.engine.plan import Plan
from lab.engine.state import NodeResult
from lab.inventory import Inventory

HOST_KEY_SIGNS = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED", "host key")


def explain(why: str) -> str:
    """A node failure in words a person can act on (host key problems above all)."""
    if any(sign in why for sign in HOST_KEY_SIGNS):
        return ("host key changed or unknown: the node's SSH host key does not match known_hosts; "
                "verify the node, then update known_hosts")
    return why


def node_results(result: PlaybookResult, nodes: list[str]) -> dict[str, NodeResult]:
    """Each node's outcome of a playbook run; a node the playbook never reached counts as unreachable, one whose
    execution node was lost mid-playbook as lost."""
    out = {}
    for node in nodes:
        host = result.hosts.get(node)
        if node in result.lost:
            out[node] = NodeResult(node, "lost", result.lost[node], dict(host.facts) if host is not None else {})
        elif host is None:
            out[node] = NodeResult(node, "unreachable", "the playbook never reached the node")
        elif host.unreachable or host.failed:
            out[node] = NodeResult(node, "unreachable" if host.unreachable else "failed",
                                   explain("; ".join(host.messages)), dict(host.facts))
        else:
            out[node] = NodeResult(node, "ok", "", dict(host.facts))
    return out


class AnsibleExecutor:
    """Runs lab's playbooks through ansible-runner on the plan's inventory, one fork per node."""

    def play(self, playbook: str, inventory: Inventory, nodes: list[str], extravars: dict) -> PlaybookResult:
        """One playbook on these nodes (lab.remote_executor's subclass sends some through execution nodes)."""
        return run_playbook(playbook, inventory.source, extravars=extravars, limit=",".join(nodes) or "none",
                            forks=max(1, len(nodes)))

    def prepare(self, plan: Plan, campaign: str, nodes: list[str]) -> dict[str, NodeResult]:
        bundle = build_bundle()
        result = self.play("prepare.yml", plan.inventory, nodes,
                           extravars={"lab_campaign": campaign, "lab_agent_bundle": str(bundle),
                                      # a node with this very agent is not sent it again
                                      "lab_agent_bundle_sha256": hashlib.sha256(bundle.read_bytes()).hexdigest(),
                                      "lab_controller_user": getpass.getuser(),
                                      "lab_controller": controller_name(),  # written into each lock taken
                                      "lab_models": {n: {"src": str(m.path), "dest": m.node_path, "sha256": m.sha256}
                                                     for n, m in plan.models.items()}})
        out = node_results(result, nodes)
        # prepare never reaching a node is "not reached", as a person reads it in `lab run`'s summary
        return {n: NodeResult(n, r.outcome, "not reached", r.facts) if n not in result.hosts and n not in result.lost else r
                for n, r in out.items()}

    def run_phase(self, plan: Plan, campaign: str, specs: Mapping[str, dict]) -> dict[str, NodeResult]:
        nodes = list(specs)
        result = self.play("phase.yml", plan.inventory, nodes,
                           extravars={"lab_campaign": campaign, "lab_phase_specs": dict(specs)})
        return node_results(result, nodes)

    def release(self, plan: Plan, campaign: str, nodes: list[str]) -> None:
        self.play("release.yml", plan.inventory, nodes, extravars={"lab_campaign": campaign})
