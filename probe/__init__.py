"""trioscope-probe: the host agent (collectors, publisher, control executor)."""
