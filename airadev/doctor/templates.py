"""Which env template a service's env file is checked against, and what the formats mean."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from airadev.integrations import envfile
from airadev.model import Service

# template file → the names (or aliases) of the service it is for
OWNERS = {
    "aira-ui.env.local": ("aira-ui", "ui"),
    "voice-agent.env": ("voice-agent", "voice"),
    "kb-updater.env": ("kb-updater", "kb"),
}


@dataclass(frozen=True)
class Template:
    path: Path
    vars: tuple[envfile.TemplateVar, ...]

    def get(self, name: str) -> envfile.TemplateVar | None:
        return next((v for v in self.vars if v.name == name), None)


@cache
def load(name: str) -> Template:
    path = envfile.TEMPLATES / name
    return Template(path, tuple(envfile.template_vars(path)))


def template_for(service: Service, path: Path) -> Template | None:
    """The template of the env file ``path`` of ``service``: matched by the service's names and
    the file's kind (.env.local for the UI, .env for the Python services)."""
    for name, owners in OWNERS.items():
        if set(owners) & set(service.names) and path.name == (".env.local" if name.endswith(".local") else ".env"):
            return load(name)
    return None


PLACEHOLDER = re.compile(r"^(x{3,}|your[-_ ].*|changeme|change-me|todo|<.*>|\.\.\.)$", re.IGNORECASE)
HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")

FORMATS = {
    "hex32": (lambda v: bool(HEX32.match(v)), "32 hex characters"),
    "twilio-sid": (lambda v: bool(re.match(r"^AC[0-9a-fA-F]{32}$", v)), "AC followed by 32 hex characters"),
    "stripe-key": (lambda v: v.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")), "sk_test_..."),
    "stripe-webhook-secret": (lambda v: v.startswith("whsec_"), "whsec_..."),
    "openai-key": (lambda v: v.startswith("sk-"), "sk-proj-... or sk-..."),
    "cartesia-key": (lambda v: v.startswith("sk_car_"), "sk_car_..."),
    "pinecone-key": (lambda v: v.startswith("pcsk_"), "pcsk_..."),
    "url": (lambda v: _is_url(v), "an URL such as http://127.0.0.1:54321"),
    "jwt": (lambda v: jwt_payload(v) is not None or v.startswith(("sb_publishable_", "sb_secret_")),
            "a JWT (eyJ...) or a Supabase sb_publishable_/sb_secret_ key"),
    "port": (lambda v: v.isdigit() and 1 <= int(v) <= 65535, "a port number"),
    "host": (lambda v: bool(re.match(r"^[A-Za-z0-9.:_-]+$", v)), "a host name or address"),
    "environment": (lambda v: v in ("development", "staging", "production"), "development, staging or production"),
    "name": (lambda v: bool(v.strip()), "some text"),
}


def _is_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def jwt_payload(value: str) -> dict[str, object] | None:
    """The decoded payload of a JWT, or None (the signature is not checked: only the claims
    matter here, such as a service-role key's `role`)."""
    parts = value.split(".")
    if len(parts) != 3 or not value.startswith("eyJ"):
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None
