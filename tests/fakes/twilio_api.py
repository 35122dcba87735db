"""A stand-in for Twilio's REST API (the IncomingPhoneNumbers part), on loopback.

It speaks the real wire protocol, so twilio-python runs unchanged against it: HTTP Basic auth
with the account SID and auth token, form-encoded updates, JSON answers with Twilio's paging
fields and error bodies (`{"code": 20003, "message": ..., "more_info": ..., "status": 401}`).
It records every request it receives (`requests`), and when and how it answered (`answers`).

As Twilio does, it refuses an update whose webhook URL is not a full http(s) URL with a public
host name (or an IP address): 400, error 21402, "VoiceUrl is not a valid URL: ...", and then
changes nothing of the number (every field is checked before any is kept). `throttle()` makes
it answer 429 Too Many Requests (error 20429) a given number of times, as Twilio does to an
account sending too many requests at once (such a request was not processed: safe to retry).

    server = FakeTwilio(account_sid, auth_token); server.start(); server.base_url
    server.add_number("+15551234567", voice_url=...)
    server.fail_with = 503 (.fail_methods = {"GET"}) / server.delay = 5.0 / server.forbidden = True /
  server.vanish_after_lookup = True / server.throttle(1, {"POST"}, retry_after="1")   (play failures)

Run as a script (`python twilio_api.py ACCOUNT_SID TOKEN +1555...`) it serves until killed and
prints its base URL.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

URL_FIELDS = ("VoiceUrl", "VoiceFallbackUrl", "SmsUrl", "SmsFallbackUrl", "StatusCallback")
LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
FIELDS = {
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
    "VoiceApplicationSid": "voice_application_sid",
    "TrunkSid": "trunk_sid",
    "FriendlyName": "friendly_name",
}


class FakeTwilio:
    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.fail_with: int | None = None
        self.fail_methods: set[str] = set()  # with fail_with: only these methods fail ("GET", "POST")
        self.vanish_after_lookup = False  # a number found by the list is gone when asked for by SID
        self.break_after_update = False  # once an update has landed, every request fails with 503
        self.delay = 0.0
        self.forbidden = False
        self.throttled = 0  # answers of 429 still to give (see throttle)
        self.throttle_methods: set[str] = set()
        self.retry_after: str | None = None
        self.answers: list[tuple[float, str, str, int]] = []  # (time.monotonic(), method, path, status)
        self._server: ThreadingHTTPServer | None = None

    def throttle(self, times: int = 1, methods: set[str] | None = None, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests (of ``methods``, default all) with 429 Too Many
        Requests (error 20429), with a Retry-After header when ``retry_after`` is given."""
        self.throttled, self.throttle_methods, self.retry_after = times, set(methods or ()), retry_after

    def add_number(self, phone_number: str, **fields: Any) -> dict[str, Any]:
        sid = "PN" + uuid.uuid4().hex
        record = {
            "sid": sid,
            "account_sid": self.account_sid,
            "phone_number": phone_number,
            "friendly_name": phone_number,
            "voice_url": "https://demo.twilio.com/welcome/voice/",
            "voice_method": "POST",
            "sms_url": "",
            "sms_method": "POST",
            "status_callback": "",
            "status_callback_method": "POST",
            "voice_application_sid": None,
            "sms_application_sid": None,
            "trunk_sid": None,
            "api_version": "2010-04-01",
            "capabilities": {"voice": True, "sms": True},
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers/{sid}.json",
        }
        record.update(fields)
        self.numbers[sid] = record
        return record

    def number(self, phone_number: str) -> dict[str, Any]:
        return next(r for r in self.numbers.values() if r["phone_number"] == phone_number)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeTwilio:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


def valid_url(url: str) -> bool:
    """Whether Twilio would take ``url`` as a webhook: http(s), a host that is an IP address or a
    dotted name of valid labels, a numeric port if any, nothing unencoded (spaces, controls)."""
    import ipaddress

    if not url.isprintable() or any(c.isspace() for c in url):
        return False
    parts = urlsplit(url)
    try:
        _ = parts.port  # a port that is not a number raises
    except ValueError:
        return False
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        labels = host.rstrip(".").split(".")
        return len(labels) >= 2 and all(LABEL.fullmatch(label) for label in labels)


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _handler(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            fake.answers.append((time.monotonic(), self.command, urlsplit(self.path).path, status))
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self, account: str) -> tuple[int, dict[str, Any]] | None:
            header = self.headers.get("Authorization", "")
            try:
                user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
            except ValueError:
                user = password = ""
            if (user, password) != (fake.account_sid, fake.auth_token):
                return _error(401, 20003, "Authenticate")
            if account != fake.account_sid:
                return _error(404, 20404, f"The requested resource /2010-04-01/Accounts/{account} was not found")
            if fake.forbidden:
                return _error(403, 20008, "Resource not accessible with Test Account Credentials")
            return None

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            fake.requests.append((method, parts.path, form or query))
            if fake.delay:
                time.sleep(fake.delay)
            if fake.break_after_update and any(r[0] == "POST" for r in fake.requests[:-1]):
                return self._answer(*_error(503, 20500, "An internal server error has occurred"))
            if fake.fail_with and (not fake.fail_methods or method in fake.fail_methods):
                return self._answer(*_error(fake.fail_with, 20500, "An internal server error has occurred"))
            match = re.fullmatch(r"/2010-04-01/Accounts/(\w+)/IncomingPhoneNumbers(?:/(PN\w+))?\.json", parts.path)
            if not match:
                return self._answer(*_error(404, 20404, f"The requested resource {parts.path} was not found"))
            refused = self._authorised(match.group(1))
            if refused:
                return self._answer(*refused)
            if fake.throttled and (not fake.throttle_methods or method in fake.throttle_methods):
                fake.throttled -= 1
                return self._answer(
                    *_error(429, 20429, "Too Many Requests"),
                    {"Retry-After": fake.retry_after} if fake.retry_after is not None else None,
                )
            sid = match.group(2)
            if sid is None and method == "GET":
                found = [
                    r
                    for r in fake.numbers.values()
                    if "PhoneNumber" not in query or r["phone_number"] == query["PhoneNumber"]
                ]
                uri = parts.path + ("?" + parts.query if parts.query else "")
                return self._answer(
                    200,
                    {
                        "incoming_phone_numbers": found,
                        "first_page_uri": uri,
                        "uri": uri,
                        "next_page_uri": None,
                        "previous_page_uri": None,
                        "page": 0,
                        "page_size": 50,
                        "start": 0,
                        "end": max(len(found) - 1, 0),
                    },
                )
            record = fake.numbers.get(sid or "")
            if fake.vanish_after_lookup:
                record = None
            if record is None:
                return self._answer(*_error(404, 20404, f"The requested resource {parts.path} was not found"))
            if method == "POST":
                for key in URL_FIELDS:  # all checked before any is kept: a refused update changes nothing
                    if form.get(key) and not valid_url(form[key]):
                        return self._answer(*_error(400, 21402, f"{key} is not a valid URL: {form[key]}"))
                for key, value in form.items():
                    if key in FIELDS:
                        record[FIELDS[key]] = value or None if FIELDS[key].endswith("_sid") else value
            self._answer(200, record)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


if __name__ == "__main__":
    server = FakeTwilio(sys.argv[1], sys.argv[2]).start()
    for number in sys.argv[3:]:
        server.add_number(number)
    print(server.base_url, flush=True)
    threading.Event().wait()
