"""A minimal voice agent for the tunnel tests: /health, and the Twilio webhooks answering TwiML;
/incoming-call answers as Twilio's media-stream samples do (`<Connect><Stream url="wss://HOST/
media-stream">`, HOST from the Host header), and /media-stream takes the WebSocket upgrade.

It checks X-Twilio-Signature the way a real app behind ngrok must: over the public URL, rebuilt
from X-Forwarded-Proto and X-Forwarded-Host, with the auth token from TWILIO_AUTH_TOKEN. It
logs `signature valid` or `signature INVALID` for each webhook.   usage: voice_stub.py PORT
"""

import base64
import hashlib
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from twilio.request_validator import RequestValidator

TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response><Say>stub</Say></Response>'
STREAM_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Connecting</Say>'
    '<Connect><Stream url="wss://{host}/media-stream" /></Connect></Response>'
)
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B41"  # RFC 6455


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, b'{"status":"ok"}', "application/json")
        if self.path == "/media-stream" and self.headers.get("Upgrade", "").lower() == "websocket":
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.write(b"\x88\x02\x03\xe8")  # a close frame (1000): the stream is the test's only
            self.wfile.flush()
            self.close_connection = True
            print(f"media stream upgraded (Host {self.headers.get('Host')})", flush=True)
            return
        self.reply(404, b"not found", "text/plain")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        params = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        proto = self.headers.get("X-Forwarded-Proto", "http")
        host = self.headers.get("X-Forwarded-Host") or self.headers.get("Host", "")
        url = f"{proto}://{host}{self.path}"
        valid = RequestValidator(os.environ.get("TWILIO_AUTH_TOKEN", "")).validate(
            url, params, self.headers.get("X-Twilio-Signature", "")
        )
        print(f"{self.path} from {params.get('From', '?')}: signature {'valid' if valid else 'INVALID'}", flush=True)
        if self.path.startswith("/webhooks/twilio/"):
            return self.reply(200, TWIML, "application/xml")
        if self.path == "/incoming-call":
            host = os.environ.get("STUB_STREAM_HOST") or self.headers.get("Host", "")
            return self.reply(200, STREAM_TWIML.format(host=host).encode(), "application/xml")
        self.reply(404, b"not found", "text/plain")


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print(f"voice stub listening on {sys.argv[1]}", flush=True)
server.serve_forever()
