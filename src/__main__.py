"""`python -m trioscope`: the same as the `trioscope` command."""

from trioscope.entry_point import main

main()
