"""lab: the Hailo fleet test lab (controller, node agent and virtual fleet)."""

__version__ = "0.1.0"
