"""Writes MEGABYTES of output without a single newline, as fast as it can, then creates
DONE_FILE and stays running.  usage: flood_raw.py MEGABYTES DONE_FILE"""

import sys
import time

megabytes, done = int(sys.argv[1]), sys.argv[2]
chunk = b"0123456789abcdef" * 65536  # 1 MB
out = sys.stdout.buffer
for _ in range(megabytes):
    out.write(chunk)
out.flush()
open(done, "w").close()
while True:
    time.sleep(3600)
