"""A stand-in Docker engine: the part of its API on a unix socket that `doctor` asks for
(GET /version, /_ping, /images/json, /images/NAME/json). The docker runtime's own tests run
against a real engine (tests/integration/test_docker.py)."""

from __future__ import annotations

import json
import re
import socketserver
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeEngine:
    def __init__(self, socket_path: Path, images: list[dict[str, Any]] | None = None) -> None:
        self.socket_path = socket_path
        self.images = images or []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def address_string(self) -> str:
                return "local"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = re.sub(r"^/v\d+\.\d+/", "/", self.path.split("?")[0])  # the API version prefix
                if path == "/_ping":
                    body, ctype = b"OK", "text/plain"
                elif path == "/version":
                    body, ctype = json.dumps({"Version": "20.10.24", "ApiVersion": "1.41"}).encode(), "application/json"
                elif path == "/images/json":
                    body, ctype = json.dumps(engine.images).encode(), "application/json"
                elif path.startswith("/images/") and path.endswith("/json"):
                    name = urllib.parse.unquote(path[len("/images/") : -len("/json")])
                    found = [i for i in engine.images if name in i.get("RepoTags", [])]
                    if not found:
                        body = json.dumps({"message": f"No such image: {name}"}).encode()
                        self.send_response(404)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    body, ctype = json.dumps(found[0]).encode(), "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = _Server(str(socket_path), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
