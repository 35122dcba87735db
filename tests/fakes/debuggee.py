"""A web service with a breakpoint at its start, as a developer adds one to debug: with a
terminal (`airadev attach`), pdb stops there and waits for commands; without one (stdin is
/dev/null under the supervisor), it is skipped. Then it answers HTTP on PORT until Ctrl-C."""

import http.server
import os
import sys

if sys.stdin.isatty():
    answer = 6 * 7
    breakpoint()  # the point: a debugger in the attached terminal
server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler)
print(
    f"serving on {os.environ['PORT']} (pid {os.getpid()}, stdin {'a tty' if sys.stdin.isatty() else 'not a tty'})",
    flush=True,
)
server.serve_forever()
