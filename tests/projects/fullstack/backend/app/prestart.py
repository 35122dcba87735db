"""The prestart step: the tables (what `alembic upgrade head` does in the real template), then
the first superuser."""

import os

import psycopg

from app.core import database_url

with psycopg.connect(database_url(), autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS users (email text PRIMARY KEY, is_superuser boolean NOT NULL)")
    conn.execute("INSERT INTO users VALUES (%s, true) ON CONFLICT DO NOTHING", (os.environ["FIRST_SUPERUSER"],))
print("prestart: tables ready, first superuser created")
