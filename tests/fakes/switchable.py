"""An HTTP server whose /health answers 200, or 503 while FLAG_FILE exists: a dependency that
becomes unhealthy and recovers without restarting. Each start says so with its pid.

usage: switchable.py PORT FLAG_FILE"""

import http.server
import os
import sys

port, flag = int(sys.argv[1]), sys.argv[2]


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 503 if os.path.exists(flag) else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


print(f"switchable {os.getpid()} listening on {port}", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
