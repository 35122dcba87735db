"""Stand-in for the AiRa KB Updater (airadev demo stack).

Not the real updater: it accepts the Supabase database-trigger payload and
logs it, without talking to Supabase or a vector database.

Run: uvicorn updater:app --host 0.0.0.0 --port 8080
"""

from typing import Any

from fastapi import Body, FastAPI

app = FastAPI(title="AiRa KB updater (demo stand-in)")


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/process-document")
def process_document(payload: dict[str, Any] = Body(...)):
    # Supabase trigger payload: {"type": "INSERT", "table": "documents", "record": {...}}
    # DELETE triggers carry the row in "old_record" instead of "record".
    record = payload.get("record") or payload.get("old_record") or {}
    if not isinstance(record, dict):
        record = {}
    table = payload.get("table", "?")
    doc_id = record.get("id")
    print(f"processing document {doc_id} from {table} ({payload.get('type', '?')})", flush=True)
    return {"status": "accepted", "document_id": doc_id}
