"""`python -m trioscope`: the same as the `trioscope` command."""

from trioscope.cli import main

main()
