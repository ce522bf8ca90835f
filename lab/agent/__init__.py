"""The node agent: runs ON a Pi (stdlib only, Python >= 3.9); copied there without the rest of lab."""
