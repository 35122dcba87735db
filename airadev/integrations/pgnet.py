"""pg_net for the ``postgres`` runtime: what Supabase's database triggers call to post webhooks
(the AiRa KB trigger's ``net.http_post``), where no pg_net extension exists.

In the database, ``net.http_post`` and ``net.http_get`` have pg_net's signatures (a JSON
``body``: the AiRa guide's ``body := payload::text`` fails with pg_net too, and so here) and
return the request's id. The request is queued in ``net.http_request_queue`` in the caller's
transaction, and a ``NOTIFY`` wakes the deliverer at its commit: a rolled-back insert posts
nothing. The outcome is kept as pg_net keeps it, in ``net._http_response`` (id, status_code,
content_type, headers, content, timed_out, error_msg, created).

The deliverer (a thread of the supervisor, beside the database's process) sends the requests
over HTTP in the order they were made, each with its timeout, and writes one line per delivery
into the database service's log. A request is taken off the queue in the same transaction that
records its outcome, so a crash of the supervisor loses none, and may send again the one in
flight at that moment (at least once; its body carries the row it is about). A request to a
service of the stack that does not answer (stopped, starting) is held, and the ones after it,
until it does; one elsewhere that cannot be reached is tried ``ATTEMPTS`` times.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

CHANNEL = "airadev_net"
APPLICATION = "airadev pg_net"  # its connection, in pg_stat_activity
ATTEMPTS = 5  # tries of a request that cannot be reached (outside the stack)
HOLD_MAX = 2.0  # seconds between tries of a held request at most
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "host.docker.internal")

SCHEMA = f"""
CREATE SCHEMA IF NOT EXISTS net;
CREATE TABLE IF NOT EXISTS net.http_request_queue (
  id bigserial PRIMARY KEY,
  method text NOT NULL,
  url text NOT NULL,
  params jsonb NOT NULL DEFAULT '{{}}'::jsonb,
  headers jsonb NOT NULL DEFAULT '{{}}'::jsonb,
  body bytea,
  timeout_milliseconds integer NOT NULL,
  attempts integer NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out boolean,
  error_msg text,
  created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS _http_response_created_idx ON net._http_response (created);
CREATE OR REPLACE FUNCTION net.http_post(
  url text,
  body jsonb DEFAULT '{{}}'::jsonb,
  params jsonb DEFAULT '{{}}'::jsonb,
  headers jsonb DEFAULT '{{"Content-Type": "application/json"}}'::jsonb,
  timeout_milliseconds integer DEFAULT 5000
) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE request_id bigint;
BEGIN
  INSERT INTO net.http_request_queue (method, url, params, headers, body, timeout_milliseconds)
  VALUES ('POST', url, coalesce(params, '{{}}'), coalesce(headers, '{{}}'), convert_to(body::text, 'UTF8'),
          coalesce(timeout_milliseconds, 5000))
  RETURNING id INTO request_id;
  PERFORM pg_notify('{CHANNEL}', request_id::text);
  RETURN request_id;
END $$;
CREATE OR REPLACE FUNCTION net.http_get(
  url text,
  params jsonb DEFAULT '{{}}'::jsonb,
  headers jsonb DEFAULT '{{}}'::jsonb,
  timeout_milliseconds integer DEFAULT 5000
) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE request_id bigint;
BEGIN
  INSERT INTO net.http_request_queue (method, url, params, headers, body, timeout_milliseconds)
  VALUES ('GET', url, coalesce(params, '{{}}'), coalesce(headers, '{{}}'), NULL, coalesce(timeout_milliseconds, 5000))
  RETURNING id INTO request_id;
  PERFORM pg_notify('{CHANNEL}', request_id::text);
  RETURN request_id;
END $$;
"""


# `create extension [if not exists] pg_net [with schema extensions];`: Supabase's own setup step
# (and what `supabase db pull` writes). The extension does not exist here; its stand-in does.
_EXTENSION = re.compile(r"\bcreate\s+extension\s+(?:if\s+not\s+exists\s+)?\"?pg_net\"?[^;]*;", re.IGNORECASE)


def without_extension(sql: str) -> str:
    """A migration's SQL as the postgres runtime runs it: its `create extension pg_net` a no-op."""
    return _EXTENSION.sub("SELECT 1; -- airadev: pg_net is built in here", sql)


def host_url(url: str) -> str:
    """``url`` as reached from this machine: host.docker.internal (a trigger written for
    Supabase's containers) is this machine itself."""
    parts = urlsplit(url)
    if parts.hostname == "host.docker.internal":
        netloc = parts.netloc.replace("host.docker.internal", "127.0.0.1", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class Deliverer(threading.Thread):
    """Sends the queued requests of one database until stopped (see the module's docstring).

    ``write`` gets each delivery's log line (any thread); ``stack_port`` tells whether a local
    port is a service of the stack (its requests are held while it does not answer)."""

    def __init__(self, dsn: str, write: Callable[[str], None], stack_port: Callable[[int], str | None]) -> None:
        super().__init__(name="pg_net deliverer", daemon=True)
        self.dsn = dsn
        self.write = write
        self.stack_port = stack_port
        self._stopping = threading.Event()
        self._held: tuple[int, int] | None = None  # (the request held, how many times in a row)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        import psycopg

        lost = 0
        while not self._stopping.is_set():
            try:
                self._serve()
                return
            except psycopg.OperationalError:
                if self._stopping.is_set():  # the database stopped with it
                    return
                if not lost:
                    self.write("pg_net: lost the database connection; deliveries resume when it is back")
                lost += 1
                self._stopping.wait(min(5.0, 0.2 * 2**lost))  # then connect again
            except Exception as exc:  # noqa: BLE001  (said, never silent; the next start tries again)
                self.write(f"pg_net: deliveries stopped by an internal error: {type(exc).__name__}: {exc}")
                return

    def _serve(self) -> None:
        import httpx
        import psycopg

        with (
            psycopg.connect(self.dsn, autocommit=True, connect_timeout=5, application_name=APPLICATION) as conn,
            httpx.Client() as client,
        ):
            conn.execute(f"LISTEN {CHANNEL}")
            # pg_net keeps responses for its ttl (6 hours): so here, from one start to the next.
            conn.execute("DELETE FROM net._http_response WHERE created < now() - interval '6 hours'")
            while not self._stopping.is_set():
                wait = self._deliver_all(conn, client)
                # Woken by the next request's commit, or when a held one is due again. (A stop
                # comes with the database's own stop, which ends the connection.)
                for _ in conn.notifies(timeout=min(wait, 5.0), stop_after=1):
                    pass

    def _deliver_all(self, conn: Any, client: Any) -> float:
        """Deliver what is queued, in order; how long to wait before trying again (a held
        request), or a long time when the queue is empty."""
        import psycopg

        while not self._stopping.is_set():
            row = conn.execute(
                "SELECT id, method, url, params, headers, body, timeout_milliseconds, attempts"
                " FROM net.http_request_queue ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                return 3600.0
            try:
                held = self._deliver(conn, client, *row)
            except psycopg.OperationalError:
                raise  # the connection: run() connects again
            except Exception as exc:  # noqa: BLE001  (one bad request must not stop the ones after it)
                held, why = None, f"{type(exc).__name__}: {exc}"
                try:
                    self._record(conn, row[0], None, None, {}, None, False, why)
                except psycopg.OperationalError:
                    raise
                except Exception:  # noqa: BLE001  (not even its error can be kept: dropped, and said)
                    conn.execute("DELETE FROM net.http_request_queue WHERE id = %s", (row[0],))
                self.write(f"{row[1]} {shown(row[2])} → failed ({why})")
            if held is not None:
                return held
        return 0.0

    def _deliver(
        self,
        conn: Any,
        client: Any,
        request_id: int,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        headers: dict[str, Any] | None,
        body: bytes | None,
        timeout_ms: int,
        attempts: int,
    ) -> float | None:
        import httpx

        target = httpx.URL(host_url(url))
        if params:  # into the URL's own query, as pg_net builds it
            target = target.copy_merge_params({str(k): _text(v) for k, v in params.items()})
        sent = {str(k): _text(v) for k, v in (headers or {}).items()}
        if method == "POST" and not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/json"  # pg_net's http_post does the same
        started = time.monotonic()
        status = content_type = content = error = None
        response_headers: dict[str, str] = {}
        timed_out = False
        try:
            response = client.request(
                method,
                target,
                headers=sent,
                content=bytes(body) if body is not None else None,
                timeout=max(timeout_ms, 1) / 1000,
                follow_redirects=True,  # as pg_net (libcurl's FOLLOWLOCATION)
            )
            status, content = response.status_code, response.text
            content_type = response.headers.get("content-type")
            response_headers = dict(response.headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            service = self._stack_service(str(target))
            if service is not None:  # a service of the stack, not up: held until it answers
                times = self._held[1] + 1 if self._held and self._held[0] == request_id else 1
                self._held = (request_id, times)
                if times == 1:
                    self.write(f"{method} {shown(url)}: {service} does not answer; held until it does")
                return min(HOLD_MAX, 0.1 * 2**times)
            attempts += 1
            if attempts < ATTEMPTS:
                conn.execute("UPDATE net.http_request_queue SET attempts = %s WHERE id = %s", (attempts, request_id))
                return 0.2 * 2**attempts
            error = f"{type(exc).__name__}: {exc}"
        except httpx.TimeoutException as exc:
            timed_out, error = True, f"timed out after {timeout_ms} ms ({type(exc).__name__})"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        took = (time.monotonic() - started) * 1000
        self._record(conn, request_id, status, content_type, response_headers, content, timed_out, error)
        self._held = None
        outcome = str(status) if status is not None else f"failed ({error})"
        self.write(f"{method} {shown(url)} → {outcome} in {took:.0f} ms")
        return None

    def _record(
        self,
        conn: Any,
        request_id: int,
        status: int | None,
        content_type: str | None,
        headers: dict[str, str],
        content: str | None,
        timed_out: bool,
        error: str | None,
    ) -> None:
        """The outcome into net._http_response and the request off the queue, in one
        transaction (text PostgreSQL cannot hold, a NUL, is dropped)."""
        clean = lambda text: None if text is None else text.replace("\x00", "")  # noqa: E731
        with conn.transaction():
            conn.execute(
                "INSERT INTO net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    request_id,
                    status,
                    clean(content_type),
                    clean(json.dumps(headers)),
                    clean(content),
                    timed_out,
                    clean(error),
                ),
            )
            conn.execute("DELETE FROM net.http_request_queue WHERE id = %s", (request_id,))

    def _stack_service(self, url: str) -> str | None:
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # not a port
            return None
        return self.stack_port(port) if parts.hostname in LOCAL_HOSTS else None


def _text(value: Any) -> str:
    """A jsonb value as a header or parameter: a string as it is, anything else as JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


def shown(url: str) -> str:
    """``url`` for the log: the values of its query hidden (a token there is no env file's)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = "&".join(f"{pair.split('=', 1)[0]}=***" if "=" in pair else pair for pair in parts.query.split("&"))
    return urlunsplit(parts._replace(query=query))
