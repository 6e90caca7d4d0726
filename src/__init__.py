"""trioscope: see and steer your infrastructure."""
