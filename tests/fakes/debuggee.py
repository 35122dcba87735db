"""A web service with a breakpoint at its start, as a developer adds one to debug: with a
terminal (`airadev attach`), pdb stops there and waits for commands; without one (stdin is
/dev/null under the supervisor), it is skipped. Then it answers HTTP on PORT until Ctrl-C.
IGNORE_HUP=1: SIGHUP does not end it; IGNORE_TERM_ATTACHED=1: nor SIGTERM, at a terminal."""

import http.server
import os
import signal
import sys

if os.environ.get("IGNORE_HUP"):  # as a server that reloads on SIGHUP keeps running through one
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

if sys.stdin.isatty():
    if os.environ.get("IGNORE_TERM_ATTACHED"):  # a slow stop: SIGKILL ends it after stop_grace
        signal.signal(signal.SIGTERM, lambda signum, frame: print("got SIGTERM, ignoring it", flush=True))
    answer = 6 * 7
    breakpoint()  # the point: a debugger in the attached terminal
server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler)
print(
    f"serving on {os.environ['PORT']} (pid {os.getpid()}, stdin {'a tty' if sys.stdin.isatty() else 'not a tty'})",
    flush=True,
)
server.serve_forever()
