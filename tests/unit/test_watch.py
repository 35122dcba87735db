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
    assert wanted(voice / "server.py")
    for ignored in (".venv/lib/x.py", "venv/bin/python", "__pycache__/s.pyc", "node_modules/a.js",
                    ".git/HEAD", ".airadev/state.json", "app.pyc", "x.swp"):
        assert not wanted(voice / ignored), ignored
    found = dispatch(services, [voice / "server.py", voice / "README.md", kb / "updater.py", tmp_path / "other.py"])
    assert found == {"voice": [voice / "server.py"], "kb": [kb / "updater.py"]}
