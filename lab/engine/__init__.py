"""The campaign engine: pure planning and campaign state, driven by a loop over small ports (see docs/architecture.md)."""
