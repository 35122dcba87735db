"""The host's pip settings that a container build needs to reach the same packages: where its
index is (index-url, extra-index-url, find-links), no-index, trusted-host. Read as pip reads
them (its configuration files, [global] then [install], later files winning, then ``PIP_*``
variables), and given as ``PIP_*`` build arguments (compose/Dockerfile.python declares them).

Only what a container can use is given: http(s) addresses, not file paths or file:// URLs of
this machine. pip's certificate settings are not passed: a container trusts its own CA bundle.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

SETTINGS = {
    "index-url": "PIP_INDEX_URL",
    "extra-index-url": "PIP_EXTRA_INDEX_URL",
    "find-links": "PIP_FIND_LINKS",
    "no-index": "PIP_NO_INDEX",
    "trusted-host": "PIP_TRUSTED_HOST",
}
_ADDRESSES = ("index-url", "extra-index-url", "find-links")
_TRUE = ("1", "true", "yes", "on")


def config_files(env: Mapping[str, str]) -> list[Path]:
    """pip's configuration files, in the order pip reads them (later ones win)."""
    xdg = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    found = [Path(d) / "pip" / "pip.conf" for d in reversed(xdg) if d] + [Path("/etc/pip.conf")]
    found += [home / ".pip" / "pip.conf", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf"]
    if env.get("PIP_CONFIG_FILE") and env["PIP_CONFIG_FILE"] != os.devnull:
        found.append(Path(env["PIP_CONFIG_FILE"]))
    return found


def settings(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``PIP_*`` build arguments for the host's pip settings that a container can use."""
    env = os.environ if env is None else env
    if env.get("PIP_CONFIG_FILE") == os.devnull:  # pip's way of saying: no configuration files
        files: list[Path] = []
    else:
        files = config_files(env)
    values: dict[str, str] = {}
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for key in SETTINGS:
                    if parser.has_option(section, key):
                        values[key] = parser.get(section, key)
    for key, variable in SETTINGS.items():
        if variable in env:
            values[key] = env[variable]
    out: dict[str, str] = {}
    for key, value in values.items():
        if key in _ADDRESSES:
            value = " ".join(v for v in value.split() if v.startswith(("http://", "https://")))
        elif key == "no-index":
            value = "1" if value.strip().lower() in _TRUE else ""
        else:
            value = " ".join(value.split())
        if value:
            out[SETTINGS[key]] = value
    return out
