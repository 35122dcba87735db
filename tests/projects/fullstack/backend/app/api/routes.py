import psycopg
from fastapi import APIRouter

from app.core import database_url

router = APIRouter()


@router.get("/utils/health-check/")
def health_check() -> dict:
    with psycopg.connect(database_url()) as conn:
        (users,) = conn.execute("SELECT count(*) FROM users").fetchone()
    return {"ok": True, "users": users}
