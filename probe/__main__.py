"""``python -m trioscope_probe``."""

from .cli import main

main()
