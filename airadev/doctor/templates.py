"""Which env template a service's env file is checked against, and what the formats mean."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from airadev.config.table import valid_url
from airadev.integrations import envfile
from airadev.model import Service

# `template = "..."` in airadev.toml → its file in env-templates/
AIRA = {"aira-ui": "aira-ui.env.local", "voice-agent": "voice-agent.env", "kb-updater": "kb-updater.env"}
EXAMPLES = (".env.example", ".env.sample", ".env.template")


@dataclass(frozen=True)
class Template:
    path: Path
    vars: tuple[envfile.TemplateVar, ...]
    # The app's own example (.env.example): every variable it lists is expected, its values are
    # examples; AiRa's templates say which are required and in what format.
    own: bool = False

    def get(self, name: str) -> envfile.TemplateVar | None:
        return next((v for v in self.vars if v.name == name), None)


@cache
def load(name: str) -> Template:
    path = envfile.TEMPLATES / name
    return Template(path, tuple(envfile.template_vars(path)))


def template_for(service: Service, path: Path) -> Template | None:
    """What the env file ``path`` of ``service`` is checked against: the AiRa template its
    ``template`` names (for the file of that kind: .env.local for the UI, .env for the Python
    services), else the app's own example beside the file."""
    if service.template:
        name = AIRA[service.template]
        return load(name) if path.name == (".env.local" if name.endswith(".local") else ".env") else None
    example = own_example(path)
    if example is None:
        return None
    values = envfile.read(example, strict=False)
    return Template(
        example,
        tuple(
            envfile.TemplateVar(name, value, "secret" if envfile.is_secret(name) else "server", True, "", "")
            for name, value in values.items()
        ),
        own=True,
    )


def own_example(path: Path) -> Path | None:
    """``.env.local.example`` for ``.env.local``; else the folder's .env.example (.sample,
    .template)."""
    for name in (f"{path.name}.example", f"{path.name}.sample", *EXAMPLES):
        candidate = path.with_name(name)
        if candidate != path and candidate.is_file():
            return candidate
    return None


def looks_aira(service: Service) -> str:
    """The AiRa template a service's names suggest (for a hint only: the config decides)."""
    names = set(service.names)
    for template, owners in (
        ("aira-ui", {"aira-ui", "ui"}),
        ("voice-agent", {"voice-agent", "voice"}),
        ("kb-updater", {"kb-updater", "kb"}),
    ):
        if names & owners:
            return template
    return ""


PLACEHOLDER = re.compile(r"^(x{3,}|your[-_ ].*|changeme|change-me|todo|<.*>|\.\.\.)$", re.IGNORECASE)
KNOWN_PREFIXES = (
    "sk_test_",
    "sk_live_",
    "rk_test_",
    "rk_live_",
    "sk-proj-",
    "sk-",
    "pcsk_",
    "whsec_",
    "sk_car_",
    "sb_publishable_",
    "sb_secret_",
    "AC",
    "eyJ",
)


def is_placeholder(value: str) -> bool:
    """An example value rather than a real one: `xxxx`, `your-key`, `<token>`, also behind a
    real prefix (`sk_test_xxxxxxxx`, `sk-proj-...`, `whsec_xxx`)."""
    value = value.strip()
    if PLACEHOLDER.match(value):
        return True
    lowered = value.lower()
    if "xxxx" in lowered or "your-" in lowered or "your_" in lowered or "changeme" in lowered:
        return True
    for prefix in KNOWN_PREFIXES:
        if value.startswith(prefix):
            rest = value[len(prefix) :]
            return not rest or bool(re.fullmatch(r"[xX.*]+", rest))
    return False


def service_role_problem(value: str) -> str | None:
    """Why ``value`` is not a service-role (secret) key, if it plainly is not."""
    if value.startswith("sb_publishable_"):
        return "a publishable key, not a secret one"
    payload = jwt_payload(value)
    if payload is not None and payload.get("role") == "anon":
        return "the anon key (its JWT role is anon)"
    return None


HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")

FORMATS = {
    "hex32": (lambda v: bool(HEX32.match(v)), "32 hex characters"),
    "twilio-sid": (lambda v: bool(re.match(r"^AC[0-9a-fA-F]{32}$", v)), "AC followed by 32 hex characters"),
    "stripe-key": (lambda v: v.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")), "sk_test_..."),
    "stripe-webhook-secret": (lambda v: v.startswith("whsec_"), "whsec_..."),
    "openai-key": (lambda v: v.startswith("sk-"), "sk-proj-... or sk-..."),
    "cartesia-key": (lambda v: v.startswith("sk_car_"), "sk_car_..."),
    "pinecone-key": (lambda v: v.startswith("pcsk_"), "pcsk_..."),
    "url": (valid_url, "an URL such as http://127.0.0.1:54321"),
    "jwt": (
        lambda v: jwt_payload(v) is not None or v.startswith(("sb_publishable_", "sb_secret_")),
        "a JWT (eyJ...) or a Supabase sb_publishable_/sb_secret_ key",
    ),
    "port": (lambda v: v.isdigit() and 1 <= int(v) <= 65535, "a port number"),
    "host": (lambda v: bool(re.match(r"^[A-Za-z0-9.:_-]+$", v)), "a host name or address"),
    "environment": (lambda v: v in ("development", "staging", "production"), "development, staging or production"),
    "name": (lambda v: bool(v.strip()), "some text"),
}


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
