"""A certificate authority made for one test run, and a server certificate it signed, so that
the stand-in ngrok agent serves its public addresses over https as the real service does, and
clients check them as they would check ngrok's.

    ca = session_ca()      # made once per process, in a temporary folder removed at exit
    env()                  # FAKE_NGROK_TLS_DIR (what the stand-in serves) and SSL_CERT_FILE
                           # (what httpx, and Python's ssl defaults, trust): for a Stack's env

Clients trust the CA the way a real user would trust a corporate or test CA: SSL_CERT_FILE,
which httpx (trust_env, its default) and OpenSSL's default verify paths read. Nothing is ever
written into the repository; the CA's key is deleted as soon as it has signed.

Made with the `openssl` command line (the test virtualenv has no `cryptography`).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class TestCA:
    folder: Path
    ca_cert: Path  # the CA's certificate: what clients trust
    cert: Path  # the server's certificate, for HOSTS, signed by the CA
    key: Path  # the server's private key

    __test__ = False  # not a pytest test class


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make(folder: Path, hosts: tuple[str, ...] = HOSTS) -> TestCA:
    """A new CA and a server certificate for ``hosts`` (IP addresses or names) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=airadev test CA (one test run)",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )
    _openssl("req", *ec, "-keyout", "key.pem", "-out", "server.csr", "-subj", f"/CN={hosts[0]}", cwd=folder)
    names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)
    (folder / "server.ext").write_text(
        f"subjectAltName={names}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
        cwd=folder,
    )
    for leftover in ("ca.key", "server.csr", "server.ext"):
        (folder / leftover).unlink()
    return TestCA(folder, folder / "ca.pem", folder / "cert.pem", folder / "key.pem")


@functools.cache
def session_ca() -> TestCA:
    """The CA of this test run (this process): made on first use, removed when it exits."""
    folder = Path(tempfile.mkdtemp(prefix="airadev-test-ca-"))
    atexit.register(shutil.rmtree, folder, True)
    return make(folder)


def env() -> dict[str, str]:
    """What a Stack needs in its environment: the stand-in agent serves https with the run's
    certificate, and airadev (the `tunnel --verify` client) trusts the run's CA."""
    ca = session_ca()
    return {"FAKE_NGROK_TLS_DIR": str(ca.folder), "SSL_CERT_FILE": str(ca.ca_cert)}
