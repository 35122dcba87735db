"""Sleeps, then listens on a TCP port: a service with a known start delay.

usage: slow_starter.py PORT DELAY_SECONDS
"""

import socket
import sys
import time

port, delay = int(sys.argv[1]), float(sys.argv[2])
print(f"slow starter: starting, ready in {delay}s", flush=True)
time.sleep(delay)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(16)
print(f"slow starter: listening on {port}", flush=True)
while True:
    conn, _ = server.accept()
    conn.close()
