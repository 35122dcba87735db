"""The Stripe listener's signing secret is learnt (and hidden) from its output even when it
comes in two reads, and never in part: a secret cut at the end of a read is not taken for
the whole one, which would hide only its start."""

from __future__ import annotations

from types import SimpleNamespace

from airadev.logstore import LineFramer, Redactor
from airadev.model import StripeSettings
from airadev.runtimes.stripe import StripeInstance

SECRET = "whsec_" + "a1b2c3d4" * 5
LINE = f"Ready! You are using Stripe API Version [2024-06-20]. Your webhook signing secret is {SECRET} (^C to quit)\n"


def shown_after(chunks: list[bytes]) -> tuple[str, bytes]:
    redactor = Redactor()
    framer = LineFramer(redactor=redactor)
    out: list[bytes] = []
    ctx = SimpleNamespace(hide=redactor.add, config=SimpleNamespace(stripe=StripeSettings()))
    instance = StripeInstance(ctx, None, lambda data: out.append(redactor(framer.feed(data))))  # type: ignore[arg-type]
    for chunk in chunks:
        instance.output(chunk)
    return instance.secret, b"".join(out)


def test_the_secret_is_learnt_whole_in_one_read_or_cut_anywhere_across_two() -> None:
    data = LINE.encode()
    start = data.index(b"whsec_")
    for cut in [len(data)] + list(range(start - 3, start + len(SECRET) + 2)):
        secret, shown = shown_after([data[:cut], data[cut:]] if cut < len(data) else [data])
        assert secret == SECRET, cut
        assert SECRET.encode() not in shown and b"[redacted:STRIPE_WEBHOOK_SECRET] (^C to quit)" in shown, (cut, shown)
