"""KB trigger latency on the postgres runtime: from the commit of a kb_documents insert (the
AiRa migration's trigger calls net.http_post) to its arrival at the KB updater's address, over
airadev's pg_net stand-in. The KB updater is played by a receiver in this process (stamping
each arrival), on the port the stack gives the KB updater.

Peer: Supabase's real pg_net cannot run here (it needs Supabase's images); the floor is shown
instead: the same POST sent straight from a client to the same receiver, in the same run.

Target (issue 16): every insert reaches the KB updater within 1 s.

usage: python bench/kb_trigger.py [--inserts 30]
"""

from __future__ import annotations

import argparse
import http.server
import json
import re
import shutil
import statistics
import threading
import time

import httpx
import psycopg

from common import PY, ROOT, free_port, report, run_airadev, workspace


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inserts", type=int, default=30)
    args = parser.parse_args()
    arrived: dict[str, float] = {}
    lock = threading.Lock()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            now = time.perf_counter()
            found = re.search(rb'"id": ?(\d+)', body) or re.search(rb'"n": ?"(\w+)"', body)
            with lock:
                arrived[found.group(1).decode() if found else "?"] = now
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    kb, db = free_port(), free_port()
    root = workspace(f"""
[services.db]
runtime = "postgres"
project = "aira-ui"
port = {db}

[services.kb-updater]
aliases = ["kb"]
command = ["{PY}", "-c", "import time; time.sleep(1e9)"]
port = {kb}
""")
    shutil.copytree(
        ROOT / "examples" / "demo" / "aira-ui" / "supabase" / "migrations", root / "aira-ui" / "supabase" / "migrations"
    )
    started = run_airadev(root, "up", "--detach", timeout=240)
    assert started.returncode == 0, started.stderr
    # The receiver takes the KB updater's port once the stack runs (`up` checks it is free).
    server = http.server.ThreadingHTTPServer(("127.0.0.1", kb), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ours, floor = [], []
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{db}/postgres", autocommit=True) as conn:
            for i in range(args.inserts):
                t0 = time.perf_counter()
                doc = str(
                    conn.execute("INSERT INTO kb_documents (title) VALUES (%s) RETURNING id", (f"d{i}",)).fetchone()[0]
                )
                while doc not in arrived:
                    time.sleep(0.0005)
                    if time.perf_counter() - t0 > 30:
                        raise TimeoutError(f"document {doc} never arrived")
                ours.append(arrived[doc] - t0)
        with httpx.Client() as client:
            for i in range(args.inserts):
                key = f"direct{i}"
                t0 = time.perf_counter()
                client.post(f"http://127.0.0.1:{kb}/process-document", content=json.dumps({"n": key}))
                floor.append(arrived[key] - t0)
    finally:
        run_airadev(root, "down")
        server.shutdown()
        shutil.rmtree(root, ignore_errors=True)

    def ms(values: list[float], q: float) -> str:
        values = sorted(values)
        return f"{values[min(len(values) - 1, int(q * len(values)))] * 1000:.1f} ms"

    rows = [
        (
            "commit → arrival, median",
            f"{statistics.median(ours) * 1000:.1f} ms",
            f"{statistics.median(floor) * 1000:.1f} ms",
        ),
        ("commit → arrival, 90th percentile", ms(ours, 0.9), ms(floor, 0.9)),
        ("commit → arrival, slowest", f"{max(ours) * 1000:.1f} ms", f"{max(floor) * 1000:.1f} ms"),
    ]
    return (
        0
        if report(
            f"KB trigger, {args.inserts} inserts (peer column: a direct POST, the floor; real pg_net cannot run here)",
            rows,
            [("every insert reaches the KB updater within 1 s", max(ours) <= 1.0)],
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
