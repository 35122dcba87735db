"""The KB trigger on the local database (issue 16): the postgres runtime's pg_net stand-in.
A kb_documents row reaches the demo's KB updater (real uvicorn) through the AiRa migration's
own trigger; a rolled-back insert posts nothing; what is inserted while the KB updater is
stopped, or while the supervisor is dead, goes out once, when it is back."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import psycopg

from tests.harness import PY, Stack, free_port, wait_for

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


def kb_stack(stack: Stack) -> tuple[int, int]:
    shutil.copytree(DEMO / "aira-ui" / "supabase" / "migrations", stack.root / "aira-ui" / "supabase" / "migrations")
    db, kb = free_port(), free_port()
    stack.write(f"""
[services.db]
runtime = "postgres"
project = "aira-ui"
port = {db}

[services.kb-updater]
aliases = ["kb"]
cwd = "{DEMO / "kb-updater"}"
command = ["{PY}", "-m", "uvicorn", "updater:app", "--port", "{kb}"]
port = {kb}
health = {{ http = "/health" }}
depends_on = {{ db = "healthy" }}
""")
    return db, kb


def sql(port: int, *statements: str) -> list[tuple]:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        rows: list[tuple] = []
        for statement in statements:
            cursor = conn.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
        return rows


def received(stack: Stack) -> list[int]:
    """The document ids the KB updater logged, in order."""
    return [
        int(n) for n in re.findall(r"processing document (\d+) from kb_documents \(INSERT\)", stack.log("kb-updater"))
    ]


def insert(port: int, title: str) -> int:
    return sql(port, f"INSERT INTO kb_documents (title) VALUES ('{title}') RETURNING id")[0][0]


def test_an_insert_reaches_the_kb_updater_and_a_rolled_back_one_posts_nothing(stack: Stack) -> None:
    db, kb = kb_stack(stack)
    assert stack.up().returncode == 0
    first = insert(db, "menu.pdf")
    wait_for(lambda: received(stack) == [first], what="the document at the KB updater")
    assert re.search(rf"POST http://127\.0\.0\.1:{kb}/process-document → 200 in \d+ ms", stack.log("db"))
    # pg_net's record of it.
    assert sql(db, "SELECT status_code, error_msg FROM net._http_response") == [(200, None)]
    # A rolled-back insert: its request was queued in the same transaction, and went with it.
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{db}/postgres") as conn:
        rolled_back = conn.execute("INSERT INTO kb_documents (title) VALUES ('draft') RETURNING id").fetchone()[0]
        conn.rollback()
    after = insert(db, "prices.pdf")
    wait_for(lambda: received(stack) == [first, after], what="the next document")
    assert rolled_back not in received(stack)
    assert sql(db, "SELECT count(*) FROM net.http_request_queue") == [(0,)]
    assert deliveries(stack)["status"] == "ok"
    # A request its target refuses is recorded as pg_net does; doctor reads it (inserting nothing).
    sql(db, f"SELECT net.http_post('http://127.0.0.1:{kb}/no-such-path', '{{}}'::jsonb)")
    wait_for(lambda: sql(db, "SELECT count(*) FROM net._http_response") == [(3,)], what="the refused request recorded")
    found = deliveries(stack)
    assert (
        found["status"] == "warning"
        and "1 of 3 webhook requests of the last hour failed (the last: 404)" in found["message"]
    )


def deliveries(stack: Stack) -> dict:
    import json

    report = json.loads(stack.cli("doctor", "--json", "live.kb-deliveries").stdout)
    return next(c for c in report["checks"] if c["id"] == "live.kb-deliveries")


def test_what_is_inserted_while_the_kb_updater_or_the_supervisor_is_down_arrives_once(stack: Stack) -> None:
    db, kb = kb_stack(stack)
    assert stack.up().returncode == 0
    assert stack.cli("stop", "kb").returncode == 0
    ids = [insert(db, f"doc {n}.pdf") for n in range(10)]
    wait_for(lambda: "kb-updater does not answer; held until it does" in stack.log("db"), what="the hold said")
    assert stack.log("db").count("held until it does") == 1  # said once, not once per try
    found = deliveries(stack)
    assert found["status"] == "warning"
    assert (
        f"10 webhook requests wait to be sent (the first to http://127.0.0.1:{kb}/process-document)" in found["message"]
    )
    assert stack.cli("start", "kb").returncode == 0
    wait_for(lambda: received(stack) == ids, what="the ten documents, in order")
    # The supervisor killed with requests queued (the KB updater stopped): the next up sends them.
    assert stack.cli("stop", "kb").returncode == 0
    later = [insert(db, f"late {n}.pdf") for n in range(3)]
    assert sql(db, "SELECT count(*) FROM net.http_request_queue") == [(3,)]
    os.kill(stack.state()["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: stack.cli("status").returncode == 3, what="the stack to be gone")
    assert stack.up().returncode == 0
    wait_for(lambda: received(stack) == ids + later, what="the three queued before the crash")
    assert sorted(received(stack)) == sorted(set(received(stack)))  # each once
    assert sql(db, "SELECT count(*) FROM net.http_request_queue") == [(0,)]
    assert sql(db, "SELECT count(*) FROM net._http_response WHERE status_code = 200") == [(13,)]


def test_doctor_finds_the_guides_text_body_which_no_pg_net_function_takes(stack: Stack) -> None:
    """The AiRa guide's trigger passes `body := payload::text`; pg_net's body is jsonb, so the
    insert fails ("function net.http_post(...) does not exist"), on Supabase as here."""
    db, _ = kb_stack(stack)
    migration = stack.root / "aira-ui" / "supabase" / "migrations" / "20260102000000_kb_documents.sql"
    fixed = migration.read_text()
    migration.write_text(fixed.replace("body := payload\n", "body := payload::text\n"))

    def verdict() -> dict:
        import json

        report = json.loads(stack.cli("doctor", "--offline", "--json", "runtime.pg-net").stdout)
        return next(c for c in report["checks"] if c["id"] == "runtime.pg-net")

    found = verdict()
    assert found["status"] == "error"
    assert "notify_kb_updater_webhook() calls net.http_post(body := payload::text)" in found["message"]
    assert "pass a jsonb: body := payload if it is jsonb already" in found["fix"]
    # And it is so: with that migration, the insert fails.
    assert stack.up().returncode == 0
    try:
        insert(db, "menu.pdf")
        raise AssertionError("the insert went through")
    except psycopg.errors.UndefinedFunction as exc:
        assert "function net.http_post(url => text, headers => jsonb, body => text) does not exist" in str(exc)
    assert stack.cli("down").returncode == 0
    # Fixed as the fix says, in a later migration: only the function's latest definition counts.
    # (It also says `create extension pg_net`, as Supabase projects do: a no-op here, not an error.)
    later = migration.with_name("20260103000000_fix_kb_trigger.sql")
    body = fixed[fixed.index("CREATE OR REPLACE FUNCTION") : fixed.index("CREATE TRIGGER")]
    later.write_text("create extension if not exists pg_net with schema extensions;\n" + body)
    assert verdict()["status"] == "ok"
    assert stack.up().returncode == 0
    first = insert(db, "menu.pdf")
    wait_for(lambda: first in received(stack), what="the document, with the fixed trigger")
    # A text cast inside a jsonb expression is no text body.
    later.write_text(body.replace("body := payload", "body := to_jsonb(NEW.title::text)"))
    assert verdict()["status"] == "ok"


def test_requests_go_out_as_pg_net_sends_them_and_one_bad_request_or_a_lost_connection_stops_nothing(
    stack: Stack,
) -> None:
    import http.server
    import threading

    seen: list[tuple[str, str | None]] = []

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/old":
                self.send_response(307)
                self.send_header("Location", "/new")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            seen.append((self.path, self.headers.get("Content-Type")))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    echo = f"http://127.0.0.1:{server.server_port}"
    db = free_port()
    stack.write(f'[services.db]\nruntime = "postgres"\nport = {db}\n')
    try:
        assert stack.up().returncode == 0
        sql(
            db,
            # The URL's own query kept, a token in it hidden in the log; no headers: JSON's content type.
            f"SELECT net.http_post('{echo}/echo?token=s3cr3t-in-the-url', '{{}}'::jsonb, headers := NULL)",
            # params go into the query; a redirect is followed (as libcurl does for pg_net).
            f"""SELECT net.http_post(url := '{echo}/p', body := '{{}}', params := '{{"x": "1"}}')""",
            f"SELECT net.http_post('{echo}/old', '{{}}'::jsonb)",
            # A header no HTTP request can carry: recorded as failed, and the next one still goes.
            f"""SELECT net.http_post('{echo}/bad', '{{}}'::jsonb, headers := '{{"X-Title": "men\u00fa\\n"}}')""",
            f"SELECT net.http_post('{echo}/after', '{{}}'::jsonb)",
        )
        wait_for(
            lambda: [p for p, _ in seen] == ["/echo?token=s3cr3t-in-the-url", "/p?x=1", "/new", "/after"],
            what="the four",
        )
        assert {t for _, t in seen} == {"application/json"}
        failed = sql(db, "SELECT error_msg FROM net._http_response WHERE status_code IS NULL")
        assert len(failed) == 1 and failed[0][0]
        log = stack.log("db")
        assert f"POST {echo}/echo?token=*** → 200" in log and "s3cr3t-in-the-url" not in log
        # Its connection ended under it (a "reset the database" script): it connects again.
        sql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'airadev pg_net'")
        wait_for(lambda: "pg_net: lost the database connection" in stack.log("db"), what="the loss said")
        sql(db, f"SELECT net.http_post('{echo}/again', '{{}}'::jsonb)")
        wait_for(lambda: seen[-1][0] == "/again", what="a delivery after the reconnection")
    finally:
        server.shutdown()
