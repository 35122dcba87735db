"""The tunnel's error reading, on the real services' texts: the ngrok agent's `err=` (as pyngrok's
own log parser hands it over: one logfmt value, its line breaks still escaped), the agent API's
refusals, and Twilio's REST error answers. Pure functions: no process, no socket.

Sources of the texts: the agent's log lines and API answers as users posted them (pyngrok issues
#64 and #125, ngrok issues #859, irphisher #1, Storm-Breaker #58, atlantis PR #6164,
kafka-docker-playground CI logs), ngrok's error reference (ngrok-docs, errors/index), and
Twilio's error pages (21402, 20429) and answers (twilio-contact-center #17). Account names,
e-mail addresses and tokens in them are replaced.
"""

from __future__ import annotations

import json
import ssl

import pytest
from pyngrok.exception import PyngrokNgrokHTTPError
from pyngrok.log import NgrokLog

from airadev.integrations import ngrok, twilio

# --- the agent's own log lines (err= holds the whole text; pyngrok keeps the escapes) --------------

LINE_4018 = (
    r't=2026-02-07T19:59:52+0800 lvl=eror msg="failed to reconnect session" obj=tunnels.session '
    r'err="authentication failed: Usage of ngrok requires a verified account and authtoken.\n\n'
    r"Sign up for an account: https://dashboard.ngrok.com/signup\nInstall your authtoken: "
    r'https://dashboard.ngrok.com/get-started/your-authtoken\r\n\r\nERR_NGROK_4018\r\n"'
)
LINE_108 = (
    r't=2026-03-01T10:00:00+0000 lvl=eror msg="session closing" obj=tunnels.session '
    r'err="authentication failed: Your account is limited to 1 simultaneous ngrok agent sessions.\n'
    r"Run multiple endpoints at the same time from a single agent by defining them in your agent "
    r"configuration file and running `ngrok start --all`.\nRead more about the agent configuration file: "
    r"https://ngrok.com/docs/agent/config/ \nYou can view your current agent sessions in the dashboard: "
    r"https://dashboard.ngrok.com/agents. Upgrade to a paid plan to remove this limit:\n"
    r'https://dashboard.ngrok.com/billing/choose-a-plan\r\n\r\nERR_NGROK_108\r\n"'
)
LINE_108_OLD = (
    r't=2022-02-03T11:23:52-0500 lvl=eror msg="failed to auth" obj=tunnels.session '
    r'err="Your account is limited to 1 simultaneous ngrok client session.\nActive ngrok client '
    r"sessions in region 'eu':\n  - ts_24bW9lLI11ZkK1gsX0TbJkbtCkw (203.0.113.7)\r\n\r\nERR_NGROK_108\r\n"
    '"'
)
LINE_105 = (
    r't=2021-09-24T23:20:55-0400 lvl=eror msg="failed to auth" obj=tunnels.session '
    r'err="The authtoken you specified does not look like a proper ngrok tunnel authtoken.\n'
    r"Your authtoken: 2bXplaceholderToken~\nInstructions to install your authtoken are on your ngrok "
    r'dashboard:\nhttps://dashboard.ngrok.com/get-started/your-authtoken\r\n\r\nERR_NGROK_105\r\n"'
)
LINE_3_SESSIONS = LINE_108.replace("limited to 1 simultaneous", "limited to 3 simultaneous")
LINE_NO_CODE = r't=2026-03-01T10:00:00+0000 lvl=crit msg="command failed" err="failed to dial ngrok server: dial tcp: lookup connect.ngrok-agent.com: no such host\n"'


def agent_error(line: str) -> str:
    """What pyngrok's PyngrokNgrokError.ngrok_error holds for that line (its own parser)."""
    err = NgrokLog(line).err
    assert err is not None and "ERR_NGROK_" in err or "no such host" in (err or "")
    return err


@pytest.mark.parametrize(
    ("line", "message", "fix"),
    [
        (
            LINE_4018,
            "ngrok refused to start without the auth token of a verified account (ERR_NGROK_4018)",
            "NGROK_AUTHTOKEN",
        ),
        (LINE_105, "ngrok refused the auth token: it is not an ngrok authtoken (ERR_NGROK_105)", "NGROK_AUTHTOKEN"),
        # It begins with "authentication failed:", yet it is not the token: read by the code.
        (
            LINE_108,
            "ngrok allows this account one agent session at a time, and another one is running (ERR_NGROK_108)",
            "stop the other ngrok agent",
        ),
        (
            LINE_108_OLD,
            ("ngrok allows this account one agent session at a time, and another one is running (ERR_NGROK_108)"),
            "stop the other ngrok agent",
        ),
        (LINE_3_SESSIONS, "ngrok allows this account 3 agent sessions at a time", "stop the other ngrok agent"),
        (
            LINE_NO_CODE,
            (
                "ngrok failed to start: failed to dial ngrok server: dial tcp: lookup connect.ngrok-agent.com: "
                "no such host"
            ),
            "airadev logs ngrok",
        ),
    ],
    ids=["4018", "105", "108", "108-old-wording", "108-three", "no-code"],
)
def test_the_agent_s_error_is_read_by_its_code_into_one_line(line: str, message: str, fix: str) -> None:
    said, how = ngrok.explain(agent_error(line))
    assert said.startswith(message) and fix in how
    for text in (said, how):
        assert "\n" not in text and "\\n" not in text and "\\r" not in text
    assert "2bXplaceholderToken" not in said + how, "the token the text quotes is never repeated"


def test_an_unknown_code_shows_the_first_line_and_where_the_code_is_explained() -> None:
    # ngrok's error reference: ERR_NGROK_123 (here as the agent would log it, its code at the end)
    err = (
        'authentication failed: The account "AiRa Dev" may not start an ngrok agent session until the '
        "admin's email address is verified. Verify your email at https://dashboard.ngrok.com/user/settings"
        "\\r\\n\\r\\nERR_NGROK_123\\r\\n"
    )
    assert ngrok.explain(err) == (
        "the ngrok account's email address is not verified yet (ERR_NGROK_123)",
        "verify it at https://dashboard.ngrok.com/user/settings, then try again",
    )
    err = (
        "Your account may not run more than 2 tunnels over a single ngrok agent session.\\nThe tunnels already "
        "running on this session are:\\ntn_2BrHRzZyqfUZMWzabBRR8EOUjSy, tn_2BrHS0gmHo73RRx0sCvebu92puf\\n"
        "\\r\\n\\r\\nERR_NGROK_324\\r\\n"
    )
    said, how = ngrok.explain(err)
    assert said == (
        "ngrok failed to start: Your account may not run more than 2 tunnels over a single ngrok agent "
        "session. (ERR_NGROK_324)"
    )
    assert "https://ngrok.com/docs/errors/err_ngrok_324/" in how


# --- the agent API's refusal of an endpoint (POST /api/endpoints answers 502) ----------------------


def api_refusal(err: str) -> PyngrokNgrokHTTPError:
    """What pyngrok raises for it (its own exception, as api_request builds it)."""
    body = json.dumps({"error_code": 103, "status_code": 502, "msg": "failed to start tunnel", "details": {"err": err}})
    return PyngrokNgrokHTTPError(
        f"ngrok client exception, API returned 502: {body}",
        "http://127.0.0.1:4040/api/endpoints",
        502,
        "Bad Gateway",
        {},
        body,
    )


ERR_320 = (
    "This domain is reserved for another account.\nFailed to bind the domain 'aira-dev.ngrok.app' for the "
    "account 'Someone Else'.\n\nIf you have reserved this name, make sure that you are using an\nauthtoken "
    "credential for the appropriate account.\n\nReserve a name on your dashboard: "
    "https://dashboard.ngrok.com/cloud-edge/domains/new\r\n\r\nERR_NGROK_320\r\n"
)
ERR_307 = (
    "You must reserve an address for your account before it can be bound.\nFailed to bind the address "
    "'1.tcp.ngrok.io:9000' for the account 'someone@example.com' in region 'us'.\n(Hint: Did you reserve "
    "the address in this region?)\n\nReserve an address on your dashboard: "
    "https://dashboard.ngrok.com/endpoints/tcp-addresses\r\n\r\nERR_NGROK_307\r\n"
)


def test_a_domain_that_is_not_the_account_s_is_said_in_one_line() -> None:
    exc = api_refusal(ERR_320)
    assert exc.ngrok_error is None, "pyngrok keeps the agent's text only in the answer's body"
    said, how = ngrok.explain(ngrok.error_text(exc), "aira-dev.ngrok.app")
    assert (
        said == "ngrok refused the domain aira-dev.ngrok.app: it is reserved for another ngrok account (ERR_NGROK_320)"
    )
    assert "dashboard.ngrok.com/domains" in how and "--domain" in how
    # Without the domain at hand, it is read from the text.
    assert ngrok.explain(ERR_320)[0].startswith("ngrok refused the domain aira-dev.ngrok.app:")
    said, how = ngrok.explain(ngrok.error_text(api_refusal(ERR_307)))
    assert (
        said == "ngrok failed to start: You must reserve an address for your account before it can be bound. "
        "(ERR_NGROK_307)"
    )
    assert "\n" not in said + how


def test_an_api_answer_that_is_not_json_is_shown_as_it_came() -> None:
    exc = PyngrokNgrokHTTPError(
        "ngrok client exception, API returned 500: oops", "http://x/api/endpoints", 500, "Server Error", {}, "oops"
    )
    assert ngrok.explain(ngrok.error_text(exc)) == ("ngrok failed to start: oops", "see `airadev logs ngrok`")


# --- Twilio's REST errors ---------------------------------------------------------------------------

UPDATE = "update the number's webhooks"


@pytest.mark.parametrize(
    ("status", "code", "message", "said", "fix"),
    [
        (
            400,
            21402,
            "Unable to update record: VoiceUrl is not a valid URL: http://demo-contact-.herokuapp.com/api/ivr/welcome",
            (
                "Twilio refused a webhook URL while trying to update the number's webhooks: VoiceUrl is not a valid URL: "
                "http://demo-contact-.herokuapp.com/api/ivr/welcome (400, error 21402)"
            ),
            "twilio.voice_path",
        ),
        (
            429,
            20429,
            "Unable to update record: Too Many Requests",
            "Twilio kept answering 429 Too Many Requests while trying to update the number's webhooks (error 20429, 3 retries)",
            "try again in a minute",
        ),
        (
            401,
            20003,
            "Unable to update record: Authenticate",
            "Twilio refused the credentials while trying to update the number's webhooks (401, error 20003)",
            "TWILIO_AUTH_TOKEN",
        ),
        (
            403,
            20008,
            "Unable to update record: Resource not accessible with Test Account Credentials",
            "Twilio forbade this account to update the number's webhooks (403, error 20008)",
            "live credentials",
        ),
        (
            404,
            20404,
            (
                "Unable to update record: The requested resource /2010-04-01/Accounts/AC1/IncomingPhoneNumbers/"
                "PN1.json was not found"
            ),
            "Twilio found no such account or number",
            "TWILIO_ACCOUNT_SID",
        ),
        (
            503,
            20500,
            "Unable to update record: An internal server error has occurred",
            "Twilio failed while trying to update the number's webhooks (503)",
            "try again in a minute",
        ),
        (
            400,
            21421,
            "Unable to update record: PhoneNumber is invalid",
            "Twilio answered 400 while trying to update the number's webhooks: PhoneNumber is invalid (error 21421)",
            "https://www.twilio.com/docs/errors/21421",
        ),
    ],
    ids=["21402", "20429", "20003", "20008", "20404", "20500", "other"],
)
def test_twilio_errors_are_one_line_and_a_fix(status: int, code: int, message: str, said: str, fix: str) -> None:
    error = twilio._rest_error(status, code, UPDATE, "AC1", message)
    assert error.message.startswith(said) and fix in error.fix
    assert "\n" not in error.message + error.fix


def test_a_429_is_retried_a_bounded_number_of_times_honouring_retry_after() -> None:
    assert twilio.retry_delay(429, None, 0) == 0.5 and twilio.retry_delay(429, None, 2) == 2.0
    assert twilio.retry_delay(429, "1", 0) == 1.0
    assert twilio.retry_delay(429, "3600", 0) == twilio.RETRY_WAIT_MAX, "a long Retry-After is cut short"
    assert twilio.retry_delay(429, "soon", 1) == 1.0, "an unreadable one: the backoff"
    import time
    from email.utils import formatdate

    in_two_seconds = twilio.retry_delay(429, formatdate(time.time() + 2, usegmt=True), 0)
    assert in_two_seconds is not None and 0.5 < in_two_seconds <= 2.0
    assert twilio.retry_delay(429, "1", twilio.RETRIES) is None, "bounded"
    for status in (200, 400, 500, 503):
        assert twilio.retry_delay(status, "1", 0) is None, "only 429 (nothing was processed) is sent again"


def test_the_twilio_client_sends_a_throttled_request_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.http.response import Response

    answers = [
        Response(429, '{"code": 20429, "message": "Too Many Requests", "status": 429}', {"Retry-After": "1"}),
        Response(200, '{"sid": "PN1"}', {}),
    ]
    sent: list[tuple[str, str]] = []
    waited: list[float] = []

    def send(self: TwilioHttpClient, method: str, url: str, **kwargs: object) -> Response:
        sent.append((method, url))
        return answers.pop(0)

    monkeypatch.setattr(TwilioHttpClient, "request", send)
    monkeypatch.setattr(twilio.time, "sleep", waited.append)
    answer = twilio._http_client(5).request("POST", "https://api.twilio.com/x.json")
    assert answer.status_code == 200 and len(sent) == 2 and waited == [1.0]


# --- the signed test call's certificate check ---------------------------------------------------------


def test_an_untrusted_certificate_is_recognised_through_httpx_s_exception_chain() -> None:
    import httpx

    from airadev.operations.tunnel import certificate_problem

    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    cause.verify_message = "unable to get local issuer certificate"
    try:
        try:
            raise cause
        except ssl.SSLError as exc:
            raise httpx.ConnectError(str(exc)) from exc
    except httpx.ConnectError as wrapped:
        assert certificate_problem(wrapped) == "unable to get local issuer certificate"
    assert certificate_problem(httpx.ConnectError("[Errno 111] Connection refused")) == ""


def test_the_media_stream_check_compares_hosts_as_twilio_would_and_says_what_is_wrong() -> None:
    """Found by review: a default port or a capital letter is the same host; ws:// is not what
    Twilio opens; a malformed URL in the TwiML is said, not a crash."""
    from airadev.operations.tunnel import check_stream, verdict

    tunnel = "https://abc.ngrok-free.app"
    same = check_stream("ws://ABC.ngrok-free.app:443/media", tunnel)
    assert same["same_host"] and not same["wss"] and not same["upgraded"]  # (no connection tried)
    base = {"status": 200, "twiml": True, "url": tunnel + "/incoming-call", "ms": 1.0}
    said = verdict({**base, "stream": same})
    assert said is not None and "Twilio opens media streams over wss only" in said[0]
    other = check_stream("wss://old.ngrok.app/media", tunnel)
    said = verdict({**base, "stream": other})
    assert said is not None and said[0] == (
        "the TwiML's media stream goes to old.ngrok.app, not to the tunnel (abc.ngrok-free.app)"
    )
    broken = check_stream("wss://[abc.ngrok-free.app/media", tunnel)
    said = verdict({**base, "stream": broken})
    assert said is not None and said[0].startswith(
        "the TwiML's media stream URL 'wss://[abc.ngrok-free.app/media' is not a URL"
    )
    assert verdict(base) is None
