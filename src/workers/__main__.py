"""``python -m trioscope.workers``: one serving process of ``trioscope serve
--workers N``, started by that command's parent process (never by hand: it
reads what to serve from its stdin)."""

from trioscope.workers import worker_main

worker_main()
