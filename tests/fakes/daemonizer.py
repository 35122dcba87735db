"""Starts a daemon that leaves the process group and session (double fork + setsid), then waits."""

import os
import time

read_end, write_end = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(read_end)
        os.write(write_end, str(os.getpid()).encode())
        os.close(write_end)
        while True:
            time.sleep(3600)
    os._exit(0)
os.close(write_end)
daemon_pid = int(os.read(read_end, 32))
os.wait()
print(f"daemonizer: daemon pid {daemon_pid}", flush=True)
while True:
    time.sleep(3600)
