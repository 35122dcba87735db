"""Reading `supabase status`: what Supabase CLI 2.117.0 prints (through the stand-in
tests/fakes/bin/supabase, and as literal text), a CLI without ANON_KEY, progress on stderr,
junk, and nothing running."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from airadev.integrations import supabase
from tests.harness import FAKES

CLI = str(FAKES / "bin" / "supabase")
NAMES_2_117 = {
    "API_URL",
    "REST_URL",
    "GRAPHQL_URL",
    "FUNCTIONS_URL",
    "MCP_URL",
    "STORAGE_S3_URL",
    "DB_URL",
    "STUDIO_URL",
    "MAILPIT_URL",
    "INBUCKET_URL",
    "PUBLISHABLE_KEY",
    "SECRET_KEY",
    "JWT_SECRET",
    "ANON_KEY",
    "SERVICE_ROLE_KEY",
    "S3_PROTOCOL_ACCESS_KEY_ID",
    "S3_PROTOCOL_ACCESS_KEY_SECRET",
    "S3_PROTOCOL_REGION",
}
HIDDEN = {
    "PUBLISHABLE_KEY",
    "SECRET_KEY",
    "JWT_SECRET",
    "ANON_KEY",
    "SERVICE_ROLE_KEY",
    "S3_PROTOCOL_ACCESS_KEY_ID",
    "S3_PROTOCOL_ACCESS_KEY_SECRET",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "supabase").mkdir()
    (tmp_path / "supabase" / "config.toml").write_text('project_id = "aira"\n[api]\nport = 54321\n')
    monkeypatch.setenv("FAKE_SUPABASE_STATE", str(tmp_path / "state.json"))
    monkeypatch.delenv("FAKE_SUPABASE_FAIL", raising=False)
    monkeypatch.delenv("FAKE_SUPABASE_CALLS", raising=False)
    monkeypatch.delenv("FAKE_SUPABASE_STATUS", raising=False)
    return tmp_path


def run(project: Path, *args: str, status: dict[str, object] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FAKE_SUPABASE_STATUS": json.dumps(status or {})}
    return subprocess.run(
        [CLI, *args, "--workdir", str(project)], capture_output=True, text=True, env=env, timeout=30, check=False
    )


def started(project: Path, *args: str, status: dict[str, object] | None = None) -> None:
    done = run(project, "start", *args, status=status)
    assert done.returncode == 0, done.stderr
    assert "Started supabase local development setup." in done.stderr


def test_json_and_env_of_2_117_give_every_value(project: Path) -> None:
    started(project)
    as_json = run(project, "status", "-o", "json")
    as_env = run(project, "status", "-o", "env")
    assert as_json.returncode == as_env.returncode == 0
    found = supabase.parse_status(as_json.stdout)
    assert set(found) == NAMES_2_117
    assert found == json.loads(as_json.stdout)
    assert supabase.parse_status(as_env.stdout, "env") == found
    assert found["API_URL"] == "http://127.0.0.1:54321" and found["S3_PROTOCOL_REGION"] == "local"
    assert found["PUBLISHABLE_KEY"].startswith("sb_publishable_") and found["SECRET_KEY"].startswith("sb_secret_")
    assert found["ANON_KEY"].count(".") == 2 and found["ANON_KEY"].startswith("eyJ")
    # The JWT keys are the ones wired; nothing substituted; every key, JWT and secret is hidden.
    assert supabase.keys(found) == (found["ANON_KEY"], found["SERVICE_ROLE_KEY"])
    assert supabase.substitutions(found) == []
    assert set(supabase.secrets(found)) == HIDDEN
    assert supabase.status(CLI, project) == found


def test_literal_2_117_outputs() -> None:
    as_json = (
        '{\n  "ANON_KEY": "eyJ.a.b",\n  "API_URL": "http://127.0.0.1:54321",\n'
        '  "DB_URL": "postgresql://postgres:postgres@127.0.0.1:54322/postgres",\n'
        '  "S3_PROTOCOL_REGION": "local",\n  "linked_project_ref": "abcdefghijklmnopqrst"\n}\n'
    )
    assert supabase.parse_status(as_json) == {
        "ANON_KEY": "eyJ.a.b",
        "API_URL": "http://127.0.0.1:54321",
        "DB_URL": "postgresql://postgres:postgres@127.0.0.1:54322/postgres",
        "S3_PROTOCOL_REGION": "local",
        "linked_project_ref": "abcdefghijklmnopqrst",
    }
    # -o env: sorted NAME="value", escapes as the CLI writes them, whole numbers bare.
    as_env = 'API_URL="http://127.0.0.1:54321"\nODD="a\\"b\\\\c\\nd"\nPORT=54321\nEMPTY=""\n'
    assert supabase.parse_status(as_env, "env") == {
        "API_URL": "http://127.0.0.1:54321",
        "ODD": 'a"b\\c\nd',
        "PORT": "54321",
    }


@pytest.mark.parametrize("absent", [None, ""])
def test_a_missing_anon_key_is_absent_never_none_and_the_publishable_key_stands_in(
    project: Path, absent: str | None
) -> None:
    started(project, status={"ANON_KEY": absent})
    found = supabase.status(CLI, project)
    assert "ANON_KEY" not in found and "None" not in found.values()
    assert set(found) == NAMES_2_117 - {"ANON_KEY"}
    assert supabase.keys(found) == (found["PUBLISHABLE_KEY"], found["SERVICE_ROLE_KEY"])
    [said] = supabase.substitutions(found)
    assert said.startswith("`supabase status` printed no ANON_KEY: its PUBLISHABLE_KEY is wired in its place")
    assert found["PUBLISHABLE_KEY"] not in said
    # The literal form of the same: null and "" are no value.
    literal = supabase.parse_status(
        '{"API_URL": "http://x", "ANON_KEY": null, "SERVICE_ROLE_KEY": "", '
        '"PUBLISHABLE_KEY": "sb_publishable_x", "SECRET_KEY": "sb_secret_y"}'
    )
    assert literal == {"API_URL": "http://x", "PUBLISHABLE_KEY": "sb_publishable_x", "SECRET_KEY": "sb_secret_y"}
    assert supabase.keys(literal) == ("sb_publishable_x", "sb_secret_y")
    assert len(supabase.substitutions(literal)) == 2
    assert supabase.keys({"API_URL": "http://x"}) == ("", "")  # neither: nothing to write (wire says so)


def test_progress_on_stderr_leaves_stdout_to_parse(project: Path) -> None:
    started(project, "-x", "studio,imgproxy")
    done = run(project, "status", "-o", "json")
    assert done.stderr == "Stopped services: [supabase_imgproxy_aira supabase_studio_aira supabase_pooler_aira]\n"
    found = supabase.status(CLI, project)
    assert "STUDIO_URL" not in found and "MCP_URL" not in found and found["API_URL"] == "http://127.0.0.1:54321"
    # Should a wrapper fold stderr into stdout, around the JSON, the values still come out.
    folded = f"Stopped services: [supabase_pooler_aira]\n{done.stdout}A new version of Supabase CLI is available\n"
    assert supabase.parse_status(folded) == found
    # A line of junk that opens a brace, or a log line in JSON, before the JSON: passed over.
    for before in ("{not json}\n", '{"level": "warn", "msg": "Stopped services: [supabase_pooler_aira]"}\n'):
        assert supabase.parse_status(before + done.stdout) == found
    env = run(project, "status", "-o", "env").stdout
    assert supabase.parse_status(f"Stopped services: [supabase_pooler_aira]\n{env}", "env") == found


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "\n",
        "<html>502 Bad Gateway</html>",
        "{",
        "[1, 2]",
        '{"API_URL": ',
        "null",
        "Stopped services: [x]\n",
        '"API_URL"',
        "{not json}\n",
    ],
)
def test_junk_is_no_values(junk: str) -> None:
    assert supabase.parse_status(junk) == {}
    assert supabase.parse_status(junk, "env") == {}


def test_junk_or_a_status_without_api_url_is_one_clear_error(project: Path, tmp_path: Path) -> None:
    fake = tmp_path / "junk-cli"
    fake.write_text("#!/bin/sh\necho '<html>502 Bad Gateway</html>'\n")
    fake.chmod(0o755)
    with pytest.raises(supabase.SupabaseError) as caught:
        supabase.status(str(fake), project)
    assert caught.value.message == "`supabase status -o json` printed no API_URL"
    started(project, "-x", "kong")  # no gateway, no API URL
    with pytest.raises(supabase.SupabaseError) as caught:
        supabase.status(CLI, project)
    assert caught.value.message == "`supabase status -o json` printed no API_URL" and "kong" in caught.value.fix


def test_not_running_is_the_cli_s_first_line(project: Path) -> None:
    done = run(project, "status", "-o", "json")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(
        "failed to inspect container health: Error response from daemon: No such container: supabase_db_aira\n"
    )
    with pytest.raises(supabase.SupabaseError) as caught:
        supabase.status(CLI, project)
    assert caught.value.message == (
        "Supabase is not running: failed to inspect container health: Error response "
        "from daemon: No such container: supabase_db_aira"
    )
    assert caught.value.fix == "start it: `airadev up supabase`"
