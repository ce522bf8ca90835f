"""The emulated Hailo device: chip model, tools and hailo_platform (hailo_emu/), unit schema and .deb packaging."""
