"""The controller-agent contract (placeholder until the typed module lands)."""

AGENT_WORKDIR = "/var/lib/lab-agent"
