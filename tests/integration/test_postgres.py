"""The ``postgres`` runtime against the real server binaries: a cluster in .airadev/, the UI
repo's migrations in order, a broken one stopping `up`, data kept across down/up, the stack's
DATABASE_URL and the KB trigger's URL."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from tests.harness import Stack, fake, free_port, toml_list, wait_for

TRIGGER = """CREATE FUNCTION notify_kb_updater_webhook() RETURNS TRIGGER AS $$
DECLARE
  webhook_url TEXT := 'https://kb-updater-production.up.railway.app/process-document';
BEGIN
  PERFORM net.http_post(url := webhook_url, body := '{}'::jsonb);
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""


def db_stack(stack: Stack, migrations: dict[str, str], *, extra: str = "") -> int:
    folder = stack.root / "aira-ui" / "supabase" / "migrations"
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in migrations.items():
        (folder / name).write_text(sql)
    port = free_port()
    stack.write(f"""
[services.db]
runtime = "postgres"
project = "aira-ui"
port = {port}
{extra}""")
    return port


def query(port: int, sql: str) -> list[tuple]:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def test_migrations_apply_in_numeric_order_once_and_data_survives_down(stack: Stack) -> None:
    port = db_stack(
        stack,
        {
            # 10 sorts before 9 as text; it needs 9's table, so only numeric order works.
            "10_fill.sql": "INSERT INTO notes (body) VALUES ('from 10');",
            "9_notes.sql": "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);",
            "README.md": "not a migration",
        },
    )
    result = stack.up()
    assert result.returncode == 0, result.stderr
    assert query(port, "SELECT body FROM notes") == [("from 10",)]
    assert query(port, "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version::int") == [
        ("9",),
        ("10",),
    ]
    assert "applied 2 migrations: 9_notes.sql, 10_fill.sql" in stack.log("airadev")
    query(port, "INSERT INTO notes (body) VALUES ('written while up')")

    assert stack.cli("down").returncode == 0
    (stack.root / "aira-ui" / "supabase" / "migrations" / "11_more.sql").write_text(
        "INSERT INTO notes (body) VALUES ('from 11');"
    )
    assert stack.up().returncode == 0
    # Kept across down/up; the old migrations not applied again, the new one applied.
    assert [r[0] for r in query(port, "SELECT body FROM notes ORDER BY id")] == [
        "from 10",
        "written while up",
        "from 11",
    ]
    status = json.loads(stack.cli("status", "--json").stdout)["services"]["db"]
    assert status["runtime"] == "postgres" and status["state"] == "healthy"


def test_a_broken_migration_stops_up_naming_the_file_and_the_error(stack: Stack) -> None:
    port = db_stack(
        stack,
        {
            "1_ok.sql": "CREATE TABLE good (id int);",
            "2_broken.sql": "CREATE TABLE half (id int);\nSELECT * FROM missing_table;\n",
            "3_later.sql": "CREATE TABLE later (id int);",
        },
    )
    result = stack.up()
    assert result.returncode == 1
    assert 'migration 2_broken.sql failed (line 2): relation "missing_table" does not exist' in result.stderr
    assert stack.service("db")["state"] == "failed"
    stack.cli("down")
    # Fix it: the next up applies it and the rest; the first stayed applied, the broken one left
    # nothing behind (its first statement was rolled back with it).
    (stack.root / "aira-ui" / "supabase" / "migrations" / "2_broken.sql").write_text("CREATE TABLE half (id int);")
    assert stack.up().returncode == 0
    tables = {r[0] for r in query(port, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"good", "half", "later"}


def test_services_get_database_url_and_the_kb_trigger_points_at_the_kb_updater(stack: Stack) -> None:
    kb_port = free_port()
    port = db_stack(
        stack,
        {"1_trigger.sql": TRIGGER},
        extra=f"""
[services.kb-updater]
aliases = ["kb"]
command = {toml_list(fake("printer.py", "--env", "DATABASE_URL", "--env", "HOST", "--env", "UVICORN_HOST"))}
port = {kb_port}
health = {{ log = "UVICORN_HOST is" }}
depends_on = {{ db = "healthy" }}
""",
    )
    result = stack.up()
    assert result.returncode == 0, result.stderr
    log = stack.log("kb-updater")
    assert f"DATABASE_URL is postgresql://postgres:postgres@127.0.0.1:{port}/postgres" in log
    # No container calls it here (airadev's pg_net posts from this machine): it stays on its own address.
    assert "UVICORN_HOST is \n" in log + "\n" and "0.0.0.0" not in log
    definition = query(port, "SELECT pg_get_functiondef('notify_kb_updater_webhook'::regproc)")[0][0]
    # airadev's pg_net sends the trigger's requests from this machine: to the KB updater's port here.
    assert f"webhook_url TEXT := 'http://127.0.0.1:{kb_port}/process-document'" in definition
    assert "railway" not in definition
    assert f"now posts to http://127.0.0.1:{kb_port}/process-document" in stack.log("airadev")
    # Said once in the log: it decides where the service's data goes.
    said = f"kb-updater: DATABASE_URL is the stack's database: postgresql://postgres:postgres@127.0.0.1:{port}/postgres"
    assert stack.log("airadev").count(said) == 1


def test_an_app_that_reads_its_own_env_file_keeps_its_choice_of_database(stack: Stack) -> None:
    """An app with python-dotenv reads its folder's .env itself (airadev.toml names no env file),
    and dotenv never overrides the environment: an injected DATABASE_URL would silently win."""
    app = stack.root / "app"
    app.mkdir(parents=True)
    (app / ".env").write_text("DATABASE_URL=postgresql://app@127.0.0.1:5999/app\n")
    db_stack(
        stack,
        {},
        extra=f"""
[services.app]
cwd = "app"
command = {toml_list(fake("printer.py", "--env", "DATABASE_URL"))}
health = {{ log = "DATABASE_URL is" }}
depends_on = {{ db = "healthy" }}
[services.other]
command = {toml_list(fake("printer.py", "--env", "DATABASE_URL"))}
health = {{ log = "DATABASE_URL is" }}
depends_on = {{ db = "healthy" }}
""",
    )
    assert stack.up().returncode == 0
    assert "DATABASE_URL is \n" in stack.log("app") + "\n"  # not given: its .env decides
    assert "DATABASE_URL is postgresql://postgres:postgres@127.0.0.1:" in stack.log("other")
    assert "app: DATABASE_URL is the stack's database" not in stack.log("airadev")


def test_the_database_user_and_password_of_the_config_are_made_and_said(stack: Stack) -> None:
    """As the postgres image makes POSTGRES_DB/POSTGRES_USER/POSTGRES_PASSWORD: the app's own
    names (Compose projects use `app`); created on first start, the migrations applied in that
    database; the URL in status, its password hidden there and in the log."""
    port = db_stack(
        stack,
        {"1_items.sql": "CREATE TABLE items (id serial PRIMARY KEY);"},
        extra=f"""database = "app"
user = "appuser"
password = "s3cret-Pa55word-x9"
[services.api]
command = {toml_list(fake("printer.py", "--env", "DATABASE_URL"))}
health = {{ log = "DATABASE_URL is" }}
depends_on = {{ db = "healthy" }}
""",
    )
    result = stack.up()
    assert result.returncode == 0, result.stderr
    url = f"postgresql://appuser:s3cret-Pa55word-x9@127.0.0.1:{port}/app"
    with psycopg.connect(url) as conn:  # the app's URL works, and its database has the migrations
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("appuser", "app")
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (0,)
    assert "created user appuser and database app" in stack.log("airadev")
    status = json.loads(stack.cli("status", "--json").stdout)["services"]["db"]
    assert status["database_url"] == f"postgresql://appuser:***@127.0.0.1:{port}/app"
    assert f"db: services get DATABASE_URL=postgresql://appuser:***@127.0.0.1:{port}/app" in stack.cli("status").stdout
    shown = stack.log("airadev") + stack.log("api") + result.stdout + result.stderr
    assert "s3cret-Pa55word-x9" not in shown and f"@127.0.0.1:{port}/app" in stack.log("api")
    # The second start finds them there: nothing created again.
    assert stack.cli("down").returncode == 0 and stack.up().returncode == 0
    assert stack.log("airadev").count("created user appuser") == 1
    # A new database name while it runs: `up` restarts the database and the app whose
    # DATABASE_URL it changes (the app's own settings did not).
    toml = stack.root / "airadev.toml"
    toml.write_text(toml.read_text().replace('database = "app"', 'database = "app2"'))
    applied = stack.cli("up", "--detach")
    assert applied.returncode == 0, applied.stderr
    assert "restarted: db, api" in applied.stdout
    wait_for(lambda: f"@127.0.0.1:{port}/app2" in stack.log("api"), what="the app's new DATABASE_URL")


def test_the_cluster_lives_in_the_workspace_state_folder_only(stack: Stack, tmp_path: Path) -> None:
    db_stack(stack, {})
    assert stack.up().returncode == 0
    data = stack.root / ".airadev" / "postgres" / "db" / "data"
    assert (data / "PG_VERSION").read_text().strip().isdigit()
    assert not (data.parent / "data.new").exists()
    assert stack.cli("down").returncode == 0
    stack.wait_nothing_left()
