"""A UI stand-in that behaves like `next dev` towards its .env.local: it notices the file
changing and logs `Reload env: .env.local` (unless --deaf, then it never notices).

usage: ui_stub.py ENV_FILE [--deaf]
"""

import os
import sys
import time

path = sys.argv[1]
deaf = "--deaf" in sys.argv
print(f"ui stub reading {path}", flush=True)
print(f"VOICE_AGENT_SERVICE_URL in the environment: {os.environ.get('VOICE_AGENT_SERVICE_URL', 'absent')}", flush=True)


def stamp():
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        return None


last = stamp()
while True:
    time.sleep(0.05)
    now = stamp()
    if now != last and not deaf:
        print(f"   Reload env: {os.path.basename(path)}", flush=True)
    last = now
