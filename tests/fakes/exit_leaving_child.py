"""Says ready, then exits 1 after a moment, leaving behind a child (in its group) that ignores
SIGTERM: cleaning up after its exit takes the whole grace period."""

import subprocess
import sys
import time

subprocess.Popen(
    [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"]
)
print("leaver: ready", flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0.5)
sys.exit(1)
