from __future__ import annotations

from pathlib import Path

from airadev.model import Service
from airadev.supervisor.watch import dispatch, wanted


def test_dispatch_and_filters(tmp_path: Path) -> None:
    voice = tmp_path / "voice-agent"
    kb = tmp_path / "kb-updater"
    voice.mkdir()
    kb.mkdir()
    services = {
        "voice": Service(name="voice", command=("x",), cwd=voice, watch=(voice,), watch_ignore=("*.md",)),
        "kb": Service(name="kb", command=("x",), cwd=kb, watch=(kb,)),
    }
    assert wanted(Path("server.py")) and wanted(Path("pkg/mod.py"))
    for ignored in (
        ".venv/lib/x.py",
        "venv/bin/python",
        "__pycache__/s.pyc",
        "node_modules/a.js",
        ".git/HEAD",
        ".airadev/state.json",
        "app.pyc",
        "x.swp",
        "venv",
    ):
        assert not wanted(Path(ignored)), ignored
    found = dispatch(
        services,
        [
            voice / "server.py",
            voice / "README.md",
            kb / "updater.py",
            tmp_path / "other.py",
            voice / "__pycache__" / "server.cpython-311.pyc",
        ],
    )
    assert found == {"voice": [voice / "server.py"], "kb": [kb / "updater.py"]}


def test_a_workspace_under_a_folder_named_venv_is_watched(tmp_path: Path) -> None:
    root = tmp_path / "venv" / ".git" / "aira" / "voice-agent"
    root.mkdir(parents=True)
    services = {"voice": Service(name="voice", command=("x",), cwd=root, watch=(root,))}
    assert dispatch(services, [root / "server.py"]) == {"voice": [root / "server.py"]}


def test_what_rebuilds_a_container_s_image_and_what_only_restarts_it() -> None:
    from airadev.supervisor.watch import rebuilds

    for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml", "uv.lock", "Dockerfile"):
        assert rebuilds([Path("/w/voice-agent/server.py"), Path("/w/voice-agent") / name]), name
    for name in ("server.py", "requirements.md", "README.md", "app/models.py"):
        assert not rebuilds([Path("/w/voice-agent") / name]), name
