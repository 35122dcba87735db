"""Fails (exit 1) until a file exists; then says ready and stays up. A dependency that is
broken, then fixed.  usage: gated.py FLAG_FILE"""

import os
import sys
import time

if not os.path.exists(sys.argv[1]):
    print(f"gated: {sys.argv[1]} is missing", flush=True)
    sys.exit(1)
print("gated: ready", flush=True)
while True:
    time.sleep(3600)
