"""Prints N lines of exactly 100 bytes (99 and a newline) as fast as it can, then exits (or
waits with --stay). Each line carries its number, so a reader can check order and loss."""

import sys

count = int(sys.argv[1])
stay = "--stay" in sys.argv
out = sys.stdout.buffer
filler = b"." * 82
batch = []
for i in range(count):
    batch.append(b"flood %010d %s\n" % (i, filler))
    if len(batch) == 1000:
        out.write(b"".join(batch))
        batch.clear()
out.write(b"".join(batch))
out.flush()
if stay:
    import time

    while True:
        time.sleep(3600)
