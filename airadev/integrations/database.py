"""The stack's local database at the SQL level (psycopg): migrations, the KB updater's trigger
URL, and the test number's row in ``business_numbers``.

The same for a ``postgres`` cluster of airadev's own and for Supabase's database: both are
PostgreSQL on the DB port. Connections are short-lived and synchronous; callers on the
supervisor's loop run these functions in a thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airadev.errors import AiradevError
from airadev.model import Config, Service

MIGRATION_NAME = re.compile(r"^(\d+)_(.+)\.sql$")
TRIGGER_FUNCTION = "notify_kb_updater_webhook"
# `webhook_url TEXT := '...'` in the AiRa guide's function; the URL is what airadev changes.
_WEBHOOK_URL = re.compile(r"(webhook_url\s+text\s*:=\s*')((?:[^']|'')*)(')", re.IGNORECASE)
NUMBER_COLUMNS = ("voice_url", "sms_url", "status_callback_url")

# What Supabase's database has and plain PostgreSQL lacks, as far as migrations written for
# Supabase commonly need it to apply: its roles and a small `auth` schema. It is no Supabase:
# no REST API, no auth service; `auth.uid()` is always null here.
_SUPABASE_SHIM = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN BYPASSRLS; END IF;
END $$;
CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE TABLE IF NOT EXISTS auth.users (id uuid PRIMARY KEY, email text, created_at timestamptz DEFAULT now());
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS 'SELECT NULL::uuid';
CREATE OR REPLACE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS 'SELECT NULL::text';
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text PRIMARY KEY, statements text[], name text);
"""
_HISTORY = """
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text PRIMARY KEY, statements text[], name text);
"""


class DatabaseError(AiradevError):
    pass


def url(service: Service, host: str = "127.0.0.1", *, admin: bool = False) -> str:
    """The URL services get as ``DATABASE_URL``: Supabase's own form by default, so code written
    for one works with the other; the postgres runtime's ``database``, ``user`` and ``password``
    when set (airadev's cluster trusts loopback; the password is not checked). ``admin``: the
    cluster's superuser on its maintenance database, which always exists."""
    from urllib.parse import quote

    spec = service.database
    port = spec.db_port if spec else service.port
    if admin or spec is None:
        return f"postgresql://postgres:postgres@{host}:{port}/postgres"
    return f"postgresql://{quote(spec.user, safe='')}:{quote(spec.password, safe='')}@{host}:{port}/{quote(spec.database, safe='')}"


def shown_url(service: Service) -> str:
    """``url`` as shown (status, the log): a password of the user's own hidden; the default
    "postgres" is no secret."""
    spec = service.database
    shown = url(service)
    if spec is not None and spec.password != "postgres":
        from urllib.parse import quote

        shown = shown.replace(":" + quote(spec.password, safe="") + "@", ":***@", 1)
    return shown


def ensure_database(conn: Any, spec: Any) -> list[str]:
    """The configured user (a superuser that logs in, as the postgres image makes
    ``POSTGRES_USER``) and database (owned by it), created when missing; the user's password
    set. What was created, said."""
    from psycopg import sql

    made = []
    if (
        spec.user != "postgres"
        and not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (spec.user,)).fetchone()
    ):
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(spec.user)))
        made.append(f"user {spec.user}")
    if spec.password != "postgres" or spec.user != "postgres":
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(spec.user), sql.Literal(spec.password)))
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (spec.database,)).fetchone():
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(spec.database), sql.Identifier(spec.user))
        )
        made.append(f"database {spec.database}")
    return made


@contextmanager
def connect(dsn: str, timeout: float = 3.0) -> Iterator[Any]:
    import psycopg

    try:
        conn = psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to the database: {_first_line(exc)}", "is the database service up? `airadev status`"
        ) from None
    try:
        yield conn
    except psycopg.Error as exc:
        # What the caller's statements ran into, as one line (a trigger, a missing table...).
        raise DatabaseError(
            f"the database refused: {_first_line(exc)}", "look at the database's log (`airadev logs` of its service)"
        ) from None
    finally:
        conn.close()


def migration_files(folder: Path | None) -> list[tuple[str, Path]]:
    """(version, file) of every well-named migration, in the order Supabase applies them."""
    if folder is None or not folder.is_dir():
        return []
    found = [(m.group(1), p) for p in folder.iterdir() if p.is_file() and (m := MIGRATION_NAME.match(p.name))]
    return sorted(found, key=lambda item: (int(item[0]), item[1].name))


def apply_migrations(conn: Any, folder: Path | None, *, shim: bool) -> list[str]:
    """Apply the migrations not yet recorded in ``supabase_migrations.schema_migrations`` (the
    history table the Supabase CLI keeps), each in its own transaction with its record. Returns
    the files applied; raises DatabaseError naming the file and PostgreSQL's error, after which
    the earlier files stay applied and the failing one left no trace."""
    import psycopg

    from airadev.integrations import pgnet

    if shim:  # with pg_net's functions (what Supabase's triggers call), delivered by pgnet.Deliverer
        conn.execute(_SUPABASE_SHIM + pgnet.SCHEMA)
    else:
        conn.execute(_HISTORY)
    done = {row[0] for row in conn.execute("SELECT version FROM supabase_migrations.schema_migrations")}
    applied = []
    for version, path in migration_files(folder):
        if version in done:
            continue
        try:
            sql = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatabaseError(
                f"migration {path.name}: cannot read it ({exc})", f"save {path} as UTF-8 text"
            ) from None
        name = MIGRATION_NAME.match(path.name)
        assert name is not None  # migration_files lists only the files whose names match
        try:
            with conn.transaction():
                # Several statements: psycopg sends them in one simple query. On airadev's own
                # cluster, `create extension pg_net` is a no-op: its stand-in is there.
                conn.execute(pgnet.without_extension(sql) if shim else sql)
                conn.execute(
                    "INSERT INTO supabase_migrations.schema_migrations (version, name, statements) VALUES (%s, %s, %s)",
                    (version, name.group(2), [sql]),
                )
        except psycopg.Error as exc:
            where = f" (line {_line_of(sql, exc)})" if _line_of(sql, exc) else ""
            raise DatabaseError(
                f"migration {path.name} failed{where}: {_first_line(exc)}",
                f"fix {path}; the migrations before it are applied, and `airadev up` applies the rest",
            ) from None
        applied.append(path.name)
    return applied


def set_trigger_url(conn: Any, target: str) -> tuple[str, str] | None:
    """Point ``notify_kb_updater_webhook()``'s ``webhook_url`` at ``target``. Returns (old, new)
    when it changed it, None when the function is missing or already points there."""
    row = conn.execute(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.proname = %s ORDER BY p.oid LIMIT 1",
        (TRIGGER_FUNCTION,),
    ).fetchone()
    if row is None:
        return None
    definition = row[0]
    match = _WEBHOOK_URL.search(definition)
    if match is None:
        raise DatabaseError(
            f"{TRIGGER_FUNCTION}() has no `webhook_url TEXT := '...'` line to change",
            "declare the URL as the AiRa guide does, or set it by hand",
        )
    old = match.group(2).replace("''", "'")
    if old == target:
        return None
    quoted = target.replace("'", "''")
    conn.execute(definition[: match.start(2)] + quoted + definition[match.end(2) :])
    return old, target


def trigger_url(conn: Any) -> str | None:
    row = conn.execute(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.proname = %s LIMIT 1", (TRIGGER_FUNCTION,)
    ).fetchone()
    match = _WEBHOOK_URL.search(row[0]) if row else None
    return match.group(2).replace("''", "'") if match else None


def number_urls(conn: Any, number: str) -> dict[str, str | None] | None:
    """The test number's three webhook URLs in ``business_numbers``; None when there is no such
    table or row."""
    exists = conn.execute("SELECT to_regclass('public.business_numbers')").fetchone()[0]
    if exists is None:
        return None
    row = conn.execute(
        f"SELECT {', '.join(NUMBER_COLUMNS)} FROM business_numbers WHERE phone_number = %s", (number,)
    ).fetchone()
    return dict(zip(NUMBER_COLUMNS, row)) if row else None


def set_number_urls(conn: Any, number: str, urls: dict[str, str | None]) -> None:
    """Set the row's URLs in one statement, and read them back."""
    assignments = ", ".join(f"{column} = %s" for column in NUMBER_COLUMNS)
    conn.execute(
        f"UPDATE business_numbers SET {assignments} WHERE phone_number = %s",
        (*(urls[c] for c in NUMBER_COLUMNS), number),
    )
    if number_urls(conn, number) != urls:
        raise DatabaseError(
            f"business_numbers row of {number} did not keep the new URLs",
            "is a trigger rewriting them? check the table's triggers",
        )


def kb_service(config: Config) -> Service | None:
    """The KB updater: the service the database trigger posts to."""
    db = config.database()
    wanted = db.database.trigger_service if db and db.database else ""
    for service in config.services:
        if (wanted and wanted in service.names) or (not wanted and {"kb", "kb-updater"} & set(service.names)):
            return service
    return None


def local_trigger_url(kb: Service, *, from_containers: bool) -> str:
    """Where the database's trigger reaches the KB updater: from inside Supabase's containers
    (FACTS.md: the CLI maps host.docker.internal to the host), or from this machine (the
    postgres runtime's requests are sent by airadev's pg_net deliverer, here)."""
    host = "host.docker.internal" if from_containers else "127.0.0.1"
    return f"http://{host}:{kb.port or 8080}/process-document"


def _first_line(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    text = primary or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _line_of(sql: str, exc: Exception) -> int | None:
    diag = getattr(exc, "diag", None)
    position = getattr(diag, "statement_position", None) if diag else None
    if not position or not str(position).isdigit():
        return None
    return sql[: int(position)].count("\n") + 1
