"""One exception tree for everything lab reports to a person."""

from __future__ import annotations


class LabError(Exception):
    """Base of every error lab shows to a user: what, where, and how to fix it."""

    exit_code = 1

    def __init__(self, what: str, where: str | None = None, hint: str | None = None):
        super().__init__(what)
        self.what = what
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        return ", ".join(part for part in (self.what, self.where, self.hint) if part)


class ConfigError(LabError):
    """Bad input: a scenario, stack, profile, CSV or command-line value."""

    exit_code = 2


class InventoryError(ConfigError):
    """An inventory that is missing, malformed or names no usable host."""


class ParseError(ConfigError):
    """Text that is not the output of the tool it was said to be."""


class HostSetupError(ConfigError):
    """This controller lacks something the virtual fleet needs (root, a tool, a free address)."""


class FleetError(LabError):
    """The virtual fleet failed while starting, stopping or changing a node."""


class ConnectError(LabError):
    """A node could not be reached over SSH."""


class PlaybookError(LabError):
    """An Ansible playbook failed to run at all (not a per-host failure)."""


class WorkerLostError(PlaybookError):
    """An ansible-runner worker (local or on an execution node) ended before its playbook did."""

    def __init__(self, what: str, where: str | None = None, hint: str | None = None, partial=None):
        super().__init__(what, where, hint)
        self.partial = partial  # the PlaybookResult folded from the events that arrived before the loss


class AgentError(LabError):
    """The node agent failed or produced records that cannot be read."""


class PowerError(LabError):
    """A power driver could not switch or read a node's power (a PDU, plug or command that failed or did not answer)."""


class DatabaseError(LabError):
    """The results database cannot be opened, migrated or written."""
