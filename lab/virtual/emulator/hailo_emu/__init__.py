"""The emulated Hailo device as it runs on a virtual node: chip model, driver shim, hailortcli, hailo_platform.

A model for testing the lab, not a claim about Hailo. Standard library only, Python >= 3.9, relative
imports only: the packaging copies this package into each emulated .deb under a private path.
"""
