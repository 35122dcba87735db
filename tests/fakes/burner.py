"""Burns a known amount of CPU time and holds a known amount of memory, then idles.

usage: burner.py CPU_SECONDS MEGABYTES

Prints "burnt" once both are done; from then on it uses no CPU (it waits on stdin's absence
of input, blocked in a syscall), so its CPU seconds and RSS stay what they are.
"""

import sys
import time

seconds, megabytes = float(sys.argv[1]), int(sys.argv[2])
held = bytearray(megabytes * 1024 * 1024)
for i in range(0, len(held), 4096):  # touch every page: resident, not just reserved
    held[i] = 1
x = 0
while time.process_time() < seconds:
    x = (x * 1103515245 + 12345) & 0xFFFFFFFF
print("burnt", flush=True)
while True:
    time.sleep(3600)
