"""Stand-in for the AiRa Voice Agent (airadev demo stack).

Not the real agent: it only mimics its HTTP interface so that `airadev up`
works on a fresh machine. Configuration comes from the environment (airadev
injects the variables of .env); python-dotenv is deliberately not used.

Run: python server.py   (HOST/PORT from env, default 127.0.0.1:8000)
"""

import os
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

import psycopg
import redis
import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
REDIS_HOST = os.environ.get("REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6379"))
CALLS_KEY = "aira:demo:calls"
# The local database, as airadev gives it (the real agent reads its settings from Supabase).
DATABASE_URL = os.environ.get("DATABASE_URL", "")

XML_HEADER = '<?xml version="1.0" encoding="UTF-8"?>'

_redis = redis.Redis(
    host=REDIS_HOST,
    port=REDIS_PORT,
    socket_timeout=0.5,
    socket_connect_timeout=0.5,
    retry_on_timeout=False,
    retry=Retry(NoBackoff(), 0),  # fail fast: no retries when Redis is down
)
_redis_up = None  # last known Redis state, to log only on changes


def redis_call(fn, *args):
    """Run one Redis command; return None instead of raising when Redis is down."""
    global _redis_up
    try:
        result = fn(*args)
    except Exception as exc:  # redis.RedisError, OSError, ...
        if _redis_up is not False:
            print(f"redis unavailable at {REDIS_HOST}:{REDIS_PORT}: {exc}", flush=True)
        _redis_up = False
        return None
    if _redis_up is not True:
        print(f"redis connected at {REDIS_HOST}:{REDIS_PORT}", flush=True)
    _redis_up = True
    return result


_database_up = None  # the same for the database


def database_ok():
    """Whether the database answers a query (1 s to connect); None without DATABASE_URL."""
    global _database_up
    if not DATABASE_URL:
        return None
    try:
        with psycopg.connect(DATABASE_URL, connect_timeout=1) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        if _database_up is not False:
            print(f"database unavailable: {str(exc).strip().splitlines()[0]}", flush=True)
        _database_up = False
        return False
    if _database_up is not True:
        print("database connected", flush=True)
    _database_up = True
    return True


def twiml(body: str) -> Response:
    return Response(content=XML_HEADER + body, media_type="application/xml")


async def form_fields(request: Request) -> dict:
    """Parse a form-encoded Twilio webhook body without python-multipart."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


@asynccontextmanager
async def lifespan(app: FastAPI):
    print(f"voice agent ready on {HOST}:{PORT}", flush=True)
    yield
    print("voice agent stopping", flush=True)


app = FastAPI(title="AiRa voice agent (demo stand-in)", lifespan=lifespan)


@app.get("/health")
def health():
    ok = redis_call(_redis.ping)
    return {"status": "ok", "redis": bool(ok), "database": database_ok()}


@app.post("/webhooks/twilio/call")
async def twilio_call(request: Request):
    f = await form_fields(request)
    print(f"call from {f.get('From', '?')} to {f.get('To', '?')} CallSid={f.get('CallSid', '?')}", flush=True)
    await run_in_threadpool(redis_call, _redis.incr, CALLS_KEY)
    return twiml("<Response><Say>Hello from the AiRa demo voice agent.</Say></Response>")


@app.post("/webhooks/twilio/sms")
async def twilio_sms(request: Request):
    f = await form_fields(request)
    print(f"sms from {f.get('From', '?')} MessageSid={f.get('MessageSid', '?')}: {f.get('Body', '')!r}", flush=True)
    return twiml("<Response><Message>Thanks for your message. This is the AiRa demo voice agent.</Message></Response>")


@app.post("/webhooks/twilio/status")
async def twilio_status(request: Request):
    f = await form_fields(request)
    print(f"status CallSid={f.get('CallSid', '?')} CallStatus={f.get('CallStatus', '?')}", flush=True)
    return twiml("<Response/>")


@app.get("/calls")
def calls():
    value = redis_call(_redis.get, CALLS_KEY)
    return {"calls": int(value) if value is not None else 0}


if __name__ == "__main__":
    # DELIBERATELY LEAKY: this line prints the Twilio secrets on purpose, so the
    # airadev demo can show its log redaction at work. Never do this in the real
    # agent.
    print(
        "voice agent starting: twilio account "
        f"{os.environ.get('TWILIO_ACCOUNT_SID', '')} auth token "
        f"{os.environ.get('TWILIO_AUTH_TOKEN', '')}",
        flush=True,
    )
    uvicorn.run(app, host=HOST, port=PORT)
