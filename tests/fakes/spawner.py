"""Spawns a grandchild in its own process group (like npm → next → workers) and waits."""

import subprocess
import sys
import time

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
print(f"spawner: grandchild pid {child.pid}", flush=True)
while True:
    time.sleep(3600)
