"""Says one line, closes its stdout and stderr, and keeps running: a service whose pipe ends
long before it does (a daemon-ish server that logs elsewhere)."""

import os
import time

print("closer: closing stdout and stderr, still running", flush=True)
os.close(1)
os.close(2)
while True:
    time.sleep(3600)
