"""airadev installed as a user installs it, not from this checkout: the wheel built here (no
index reached), installed into a fresh virtualenv and with `pip install --prefix`; from there
`--version`, `init` (which copies the env templates: package data, found with
importlib.resources) and `doctor --offline` work. The dependencies come from this run's
virtualenv (PYTHONPATH: no .pth of it is read, so this checkout's editable airadev is not)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPS = sysconfig.get_paths()["purelib"]  # this run's virtualenv: typer, rich, psutil, ...


def pip(*args: str) -> None:
    """This run's pip, offline (--no-index everywhere it installs or builds)."""
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, capture_output=True)


def build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    shutil.copytree(REPO / "airadev", source / "airadev", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    out = tmp_path / "wheel"
    pip("wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out))
    [wheel] = out.glob("airadev-*.whl")
    return wheel


def check_installed(python: str, site: str, tmp_path: Path, name: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{site}:{DEPS}", "NO_COLOR": "1", "HOME": str(tmp_path)}

    def airadev(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-m", "airadev", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
        )

    where = subprocess.run(
        [python, "-c", "import airadev; print(airadev.__file__)"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert where.stdout.startswith(site), (name, where.stdout, where.stderr)  # not this checkout's
    version = airadev("--version")
    assert version.returncode == 0 and version.stdout.startswith("airadev "), version.stderr
    workspace = tmp_path / f"ws-{name}"
    (workspace / "voice-agent").mkdir(parents=True)
    init = airadev("init", str(workspace))
    assert init.returncode == 0, init.stderr
    created = workspace / "voice-agent" / ".env"
    assert created.read_text() == (REPO / "airadev" / "env-templates" / "voice-agent.env").read_text()
    doctor = airadev("doctor", "--offline", "env", cwd=workspace)
    assert doctor.returncode in (0, 1) and "Traceback" not in doctor.stdout + doctor.stderr, doctor.stderr
    assert "env.required" in doctor.stdout or "TWILIO" in doctor.stdout


def test_a_wheel_installed_into_a_fresh_venv_and_with_a_prefix_works(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    # pip install --prefix (a system pip's way, or a distribution's): the package under the prefix.
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip uninstalls this run's own (editable) airadev first
    pip("install", "--no-deps", "--no-index", "--ignore-installed", "-q", "--prefix", str(prefix), str(wheel))
    [site] = prefix.glob("lib/python3*/site-packages")
    check_installed(sys.executable, str(site), tmp_path, "prefix")
    # A fresh virtualenv of its own.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip("--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", "-q", str(wheel))
    [venv_site] = venv.glob("lib/python3*/site-packages")
    check_installed(str(venv / "bin" / "python"), str(venv_site), tmp_path, "venv")
