"""The Twilio test number's webhooks, through twilio-python.

``AIRADEV_TWILIO_API_BASE`` points the client at any Twilio-compatible server (the tests' stand-in,
a mock server of your own); TWILIO_EDGE and TWILIO_REGION, which rewrite Twilio's host names,
are ignored on purpose.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from airadev.errors import AiradevError

API_BASE_ENV = "AIRADEV_TWILIO_API_BASE"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
WIRED = ("voice_url", "voice_method", "sms_url", "sms_method", "status_callback", "status_callback_method")


class TwilioError(AiradevError):
    """A failure of this adapter: one line and a fix, like every AiradevError."""


@dataclass(frozen=True)
class Wiring:
    """Where a number sends its calls, messages and status callbacks."""

    voice_url: str
    voice_method: str
    sms_url: str
    sms_method: str
    status_callback: str
    status_callback_method: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Number:
    sid: str
    phone_number: str
    wiring: Wiring
    voice_application_sid: str | None
    trunk_sid: str | None

    @property
    def routed_elsewhere(self) -> str | None:
        """Why Twilio would ignore the number's voice URL, if it would."""
        if self.voice_application_sid:
            return f"its calls go to the TwiML app {self.voice_application_sid}"
        if self.trunk_sid:
            return f"its calls go to the SIP trunk {self.trunk_sid}"
        return None


RETRIES = 3  # answers of 429 retried, at most, per request
RETRY_WAIT_MAX = 5.0  # seconds: the longest Retry-After honoured (and the backoff's ceiling)


def retry_delay(status: int, retry_after: str | None, attempt: int) -> float | None:
    """How long to wait before sending again a request Twilio answered with ``status``, after
    ``attempt`` retries already; None: do not send it again.

    Only 429 (error 20429, Too Many Requests) is retried: Twilio processed nothing, so any
    request, an update included, is safe to send again. Retry-After (seconds, or an HTTP date)
    is honoured up to RETRY_WAIT_MAX; without it the waits are 0.5 s, 1 s, 2 s."""
    if status != 429 or attempt >= RETRIES:
        return None
    wait = 0.5 * 2**attempt
    if retry_after:
        try:
            wait = float(retry_after)
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                wait = parsedate_to_datetime(retry_after).timestamp() - time.time()
            except (TypeError, ValueError):
                pass
    return min(RETRY_WAIT_MAX, max(0.0, wait))


def _http_client(timeout: float) -> Any:
    """twilio-python's own HTTP client, with 429 retried (twilio-python retries nothing itself)."""
    from twilio.http.http_client import TwilioHttpClient

    class RetryingClient(TwilioHttpClient):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            attempt = 0
            while True:
                response = super().request(*args, **kwargs)
                headers = response.headers or {}
                delay = retry_delay(response.status_code, headers.get("Retry-After"), attempt)
                if delay is None:
                    return response
                time.sleep(delay)
                attempt += 1

    return RetryingClient(timeout=timeout)


class TwilioNumbers:
    """The IncomingPhoneNumbers of one account."""

    def __init__(
        self, account_sid: str, auth_token: str, *, timeout: float = 10.0, base_url: str | None = None
    ) -> None:
        from twilio.rest import Client

        self.account_sid = account_sid
        self.timeout = timeout
        self.client = Client(account_sid, auth_token, environment={}, http_client=_http_client(timeout))
        base = base_url or os.environ.get(API_BASE_ENV)
        if base:
            self.client.api.base_url = base.rstrip("/")
        self.base = self.client.api.base_url

    def _numbers(self) -> Any:
        return self.client.api.v2010.accounts(self.account_sid).incoming_phone_numbers

    def lookup(self, phone_number: str) -> Number:
        if not E164.match(phone_number):
            raise TwilioError(
                f'"{phone_number}" is not an E.164 phone number',
                "write it like +15551234567 (twilio.test_number or TWILIO_TEST_NUMBER)",
            )
        found = self._call(lambda: self._numbers().list(phone_number=phone_number, limit=2), "look up the number")
        if not found:
            raise TwilioError(
                f"{phone_number} is not a number of the Twilio account {self.account_sid}",
                "check twilio.test_number / TWILIO_TEST_NUMBER, and that TWILIO_ACCOUNT_SID is "
                "the (sub)account that owns it",
            )
        return _number(found[0])

    def fetch(self, sid: str) -> Number:
        return _number(self._call(lambda: self._numbers()(sid).fetch(), "read the number back"))

    def update(self, sid: str, wiring: Wiring) -> Number:
        fields = wiring.as_dict()
        self._call(lambda: self._numbers()(sid).update(**fields), "update the number's webhooks")
        after = self.fetch(sid)
        if after.wiring != wiring:
            raise TwilioError(
                "Twilio did not keep the new webhooks (read back differs)",
                "look at the number in the Twilio console, then try again",
            )
        return after

    def _call(self, action: Any, what: str) -> Any:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            return action()
        except TwilioRestException as exc:
            raise _rest_error(exc.status, exc.code, what, self.account_sid, exc.msg) from None
        except TwilioException as exc:
            # A failed list call carries the response, not a status.
            response = exc.args[1] if len(exc.args) > 1 else None
            status = getattr(response, "status_code", None)
            code, message = None, ""
            try:
                import json

                answer = json.loads(getattr(response, "text", "") or "{}")
                code, message = answer.get("code"), str(answer.get("message") or "")
            except (ValueError, AttributeError):
                pass
            if status:
                raise _rest_error(status, code, what, self.account_sid, message) from None
            raise _network_error(exc, what, self.base, self.timeout) from None
        except OSError as exc:
            raise _network_error(exc, what, self.base, self.timeout) from None
        except ValueError:  # an answer that is not Twilio's JSON (a proxy's error page, ...)
            raise TwilioError(
                f"{self.base} did not answer like Twilio while trying to {what}",
                "check the network (and AIRADEV_TWILIO_API_BASE, if set), then try again",
            ) from None
        except Exception as exc:
            # requests' own exceptions (timeouts, refused connections) are not OSErrors.
            if type(exc).__module__.startswith(("requests", "urllib3")):
                raise _network_error(exc, what, self.base, self.timeout) from None
            raise


INVALID_URL_CODES = (21402, 21502, 21609)  # "Invalid Url", "Invalid callback url", "Invalid StatusCallback"


def _rest_error(status: int, code: int | None, what: str, account: str, message: str = "") -> TwilioError:
    """One line and a fix for an error answer of Twilio's REST API (``message`` is Twilio's own,
    as twilio-python hands it over: "Unable to update record: VoiceUrl is not a valid URL: ...")."""
    said = re.sub(r"^Unable to \w+ record: ", "", " ".join(str(message).split()))
    if status == 400 and (code in INVALID_URL_CODES or "not a valid URL" in said):
        return TwilioError(
            f"Twilio refused a webhook URL while trying to {what}: {said or 'not a valid URL'} "
            f"(400, error {code or 21402})",
            "Twilio takes only full public http(s) URLs: check the tunnel's address (--domain, "
            "tunnel.domain) and twilio.voice_path / sms_path / status_path in airadev.toml",
        )
    if status == 429:
        return TwilioError(
            f"Twilio kept answering 429 Too Many Requests while trying to {what} "
            f"(error {code or 20429}, {RETRIES} retries)",
            "the account sends too many API requests at once; try again in a minute",
        )
    if status == 401:
        return TwilioError(
            f"Twilio refused the credentials while trying to {what} (401, error 20003)",
            "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the voice agent's .env (console.twilio.com)",
        )
    if status == 403:
        return TwilioError(
            f"Twilio forbade this account to {what} (403{f', error {code}' if code else ''})",
            "use the live credentials of the (sub)account that owns the test number, not test credentials",
        )
    if status == 404:
        return TwilioError(
            f"Twilio found no such account or number while trying to {what} (404)",
            f"check TWILIO_ACCOUNT_SID ({account}) and the test number",
        )
    if status >= 500:
        return TwilioError(
            f"Twilio failed while trying to {what} ({status})", "Twilio has a problem; try again in a minute"
        )
    return TwilioError(
        f"Twilio answered {status} while trying to {what}{f': {said}' if said else ''}"
        f"{f' (error {code})' if code else ''}",
        f"see https://www.twilio.com/docs/errors/{code}" if code else "see https://www.twilio.com/docs/errors",
    )


def _network_error(exc: BaseException, what: str, base: str, timeout: float) -> TwilioError:
    text = str(exc).lower()
    if "timed out" in text or "timeout" in type(exc).__name__.lower():
        return TwilioError(
            f"Twilio did not answer within {timeout:g}s while trying to {what}",
            "check the network (and AIRADEV_TWILIO_API_BASE, if set), then try again",
        )
    return TwilioError(
        f"cannot reach Twilio at {base} to {what}",
        "check the network (and AIRADEV_TWILIO_API_BASE, if set), then try again",
    )


def _number(record: Any) -> Number:
    return Number(
        sid=record.sid,
        phone_number=record.phone_number,
        wiring=Wiring(
            record.voice_url or "",
            record.voice_method or "POST",
            record.sms_url or "",
            record.sms_method or "POST",
            record.status_callback or "",
            record.status_callback_method or "POST",
        ),
        voice_application_sid=record.voice_application_sid or None,
        trunk_sid=record.trunk_sid or None,
    )


def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature of a form POST to ``url``, as Twilio computes it."""
    from twilio.request_validator import RequestValidator

    return RequestValidator(auth_token).compute_signature(url, params)
