"""Ignores SIGTERM: must be killed with SIGKILL after the grace period."""

import signal
import time


def ignore(signum, frame):
    print("term ignorer: got SIGTERM, ignoring it", flush=True)


signal.signal(signal.SIGTERM, ignore)
print("term ignorer: ready", flush=True)
while True:
    time.sleep(3600)
