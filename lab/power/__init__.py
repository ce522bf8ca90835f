"""Power control: per-node drivers (pdudaemon, shelly, command) set by the inventory's `lab_power` (see base.py)."""
