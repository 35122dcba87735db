"""Prints a few lines and exits non-zero: reaches crash-loop under a restart policy."""

import os
import sys

for i in range(3):
    print(f"crasher {os.getpid()}: line {i}", flush=True)
print("crasher: fatal: cannot connect to the database", file=sys.stderr, flush=True)
sys.exit(3)
