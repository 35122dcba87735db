"""The typed status is the JSON contract of `status --json`, `tunnel --status --json` and the
state file, unchanged: the same keys in the same order (these documents are written out by hand
in the order the supervisor wrote them before the types existed), and back again."""

from __future__ import annotations

import json

from airadev.status import ServiceStatus, StackStatus, TunnelStatus

TUNNEL_OPEN = {
    "state": "open",
    "message": "",
    "address": "https://a1b2.ngrok.app",
    "keep": False,
    "agent_pid": 4321,
    "agent_start_seconds": 0.154,
    "env_file": {"path": "/w/aira-ui/.env.local", "variable": "VOICE_AGENT_SERVICE_URL"},
    "ui_reload": "reloaded by Next.js",
    "twilio": "+15005550006 → https://a1b2.ngrok.app/webhooks/twilio/call",
    "database": "business_numbers +15005550006 → https://a1b2.ngrok.app/webhooks/twilio/call",
    "rewired": [
        {
            "kind": "envfile",
            "path": "/w/aira-ui/.env.local",
            "variable": "VOICE_AGENT_SERVICE_URL",
            "value": "https://a1b2.ngrok.app",
        },
        {
            "kind": "twilio",
            "phone_number": "+15005550006",
            "number_sid": "PN123",
            "webhooks": {"voice_url": "https://a1b2.ngrok.app/webhooks/twilio/call"},
        },
    ],
}

STATUS = {
    "schema": 1,
    "workspace": "/w",
    "marker": "0123456789.abcdefabcdef",
    "supervisor_pid": 100,
    "supervisor_start": 5555,
    "reaper_pid": 101,
    "started_at": 1796530000.25,
    "phase": "failed",
    "failure": {"service": "kb-updater", "state": "crash-loop", "message": "exited 6 times", "fix": ""},
    "summary": None,
    "config_digest": "9f86d081884c7d65",
    "docker_host": "unix:///var/run/docker.sock",
    "containers_left": False,
    "supabase_left": False,
    "supabase_stop": [],
    "tunnel": TUNNEL_OPEN,
    "services": {
        "redis": {
            "state": "healthy",
            "message": "port open",
            "pid": None,
            "pgid": None,
            "pgid_start": None,
            "port": 6379,
            "health": "port open",
            "started_at": 1796530000.5,
            "uptime": 12.345,
            "restarts": 0,
            "exit_code": None,
            "runtime": "docker",
            "container": "airadev-0123456789-redis",
            "image": "redis:7",
            "cpu_percent": 0.2,
            "rss_bytes": 8388608,
            "processes": 2,
        },
        "kb-updater": {
            "state": "crash-loop",
            "message": "exited 6 times",
            "pid": None,
            "pgid": None,
            "pgid_start": None,
            "port": 8080,
            "health": "",
            "started_at": 1796530001.0,
            "uptime": None,
            "restarts": 5,
            "exit_code": 1,
            "runtime": "process",
            "container": None,
            "image": None,
            "cpu_percent": None,
            "rss_bytes": None,
            "processes": 0,
        },
    },
}

STATE_FILE = {  # the state file: no usage, a summary, a tunnel asked for by `up --tunnel`
    "schema": 1,
    "workspace": "/w",
    "marker": "0123456789.abcdefabcdef",
    "supervisor_pid": 100,
    "supervisor_start": 5555,
    "reaper_pid": 101,
    "started_at": 1796530000.25,
    "phase": "ready",
    "failure": None,
    "summary": {
        "services": [{"name": "web", "ready_after": 1.5, "own_time": 0.5}],
        "critical_path": ["web"],
        "total": 1.5,
    },
    "config_digest": "",
    "docker_host": "",
    "containers_left": False,
    "supabase_left": True,
    "supabase_stop": ["/w/aira-ui/node_modules/.bin/supabase", "stop", "--workdir", "/w/aira-ui"],
    "tunnel": {"state": "requested"},
    "services": {
        "web": {
            "state": "healthy",
            "message": "HTTP 200",
            "pid": 300,
            "pgid": 300,
            "pgid_start": 777,
            "port": 3000,
            "health": "HTTP 200",
            "started_at": 1796530001.0,
            "uptime": 2.5,
            "restarts": 1,
            "exit_code": None,
            "runtime": "process",
            "container": None,
            "image": None,
        },
    },
}


def test_status_and_state_file_go_through_the_types_byte_for_byte() -> None:
    for document in (STATUS, STATE_FILE):
        assert json.dumps(StackStatus.from_json(document).to_json()) == json.dumps(document)


def test_the_types_say_what_the_json_says() -> None:
    status = StackStatus.from_json(STATUS)
    assert status.failure is not None and status.failure.service == "kb-updater"
    redis = status.services["redis"]
    assert isinstance(redis, ServiceStatus) and redis.usage is not None and redis.usage.rss_bytes == 8388608
    assert status.tunnel is not None and status.tunnel.detail("ui_reload") == "reloaded by Next.js"
    assert StackStatus.from_json(STATE_FILE).services["web"].usage is None


def test_a_tunnel_status_keeps_its_details_in_the_order_they_are_learnt() -> None:
    assert json.dumps(TunnelStatus.from_json(TUNNEL_OPEN).to_json()) == json.dumps(TUNNEL_OPEN)
    brief = {"state": "closed"}
    assert TunnelStatus.from_json(brief).to_json() == brief
    failed = {
        "state": "failed",
        "message": "ERR_NGROK_4018",
        "address": "",
        "keep": False,
        "agent_pid": None,
        "agent_start_seconds": 0.2,
        "rewired": [],
    }
    assert json.dumps(TunnelStatus.from_json(failed).to_json()) == json.dumps(failed)
