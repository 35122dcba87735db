"""A steady trickle: prints RATE lines of exactly 100 bytes a second, each written and flushed
on its own (as a service logging requests does), on an absolute schedule so that a late wake-up
does not lower the rate. Runs until killed.

usage: python trickle_source.py [RATE]
"""

import os
import sys
import time

rate = float(sys.argv[1]) if len(sys.argv) > 1 else 100.0
filler = b"." * 80
start = time.monotonic()
i = 0
while True:
    os.write(1, b"trickle %010d %s\n" % (i, filler))
    i += 1
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
