"""What a HipChat answer means, decided without a server."""

from __future__ import annotations

import errno
import http.client
import json
import random
import ssl

import pytest
import urllib3

from syncd.hipchat.pacing import Pacing
from syncd.hipchat.wire import (
    LIMIT_HEADERS,
    Answer,
    RetryPolicy,
    RoomTarget,
    classify,
    error_text,
    exception_text,
    server_wait,
)

POLICY = RetryPolicy(backoff_base=1.0, backoff_cap=300.0, max_server_wait=3600.0)
NOW = 1_800_000_000.0


class Fixed:
    def random(self) -> float:
        return 0.5


def judge(status: int, body: str = "", **headers: str) -> tuple[str, float | None, bool]:
    result = classify(Answer(status, headers, body), now=NOW, attempt=3, policy=POLICY, rng=Fixed())
    return result.outcome, result.retry_after, result.rate_limited


def test_any_2xx_is_delivered() -> None:
    assert judge(204)[0] == judge(200)[0] == "delivered"


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_permanent(status: int) -> None:
    assert judge(status) == ("permanent", None, False)


def test_a_5xx_without_a_wait_backs_off_with_jitter() -> None:
    assert judge(503) == ("retry", 4.0, False)  # 0.5 * min(300, 1 * 2**3)


def test_retry_after_is_honoured_past_the_backoff_cap_up_to_the_server_wait_cap() -> None:
    assert judge(503, **{"Retry-After": "1000"}) == ("retry", 1000.0, False)
    assert judge(503, **{"Retry-After": "99999"})[1] == 3600.0


def test_a_403_that_says_rate_limit_is_a_rate_limit() -> None:
    body = '{"error": {"type": "Forbidden", "message": "You have exceeded the rate limit"}}'
    assert judge(403, body)[::2] == ("retry", True)


def test_a_429_waits_for_the_exhausted_budget_to_reset() -> None:
    headers = {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(int(NOW) + 42)}
    assert judge(429, **headers) == ("retry", 42.0, True)


def test_a_reset_given_in_seconds_is_read_as_seconds_from_now() -> None:
    assert server_wait({"X-FloodControl-Reset": "30"}, NOW, POLICY, rate_limited=True) == 30.0
    assert server_wait({"X-FloodControl-Reset": "30"}, NOW, POLICY, rate_limited=False) is None


def test_an_error_shows_the_status_and_hipchats_own_message_only() -> None:
    body = '{"error": {"code": 401, "type": "Unauthorized", "message": "Invalid OAuth session"}}'
    assert error_text(401, body) == "HTTP 401 Unauthorized: Invalid OAuth session"


def test_any_other_body_is_never_shown() -> None:
    internal = "<html>admin console: db password hunter2</html>"
    assert error_text(403, internal) == "HTTP 403 Forbidden"
    assert error_text(502, '{"detail": "secret stuff"}') == "HTTP 502 Bad Gateway"
    assert error_text(599, "x") == "HTTP 599"


def test_hipchats_message_is_made_printable_and_cut_at_200_characters() -> None:
    long = json.dumps({"error": {"message": "a\x1b[31m" + "b" * 500}})
    text = error_text(500, long)
    message = text.removeprefix("HTTP 500 Internal Server Error: ")
    assert len(message) == 200 and message.endswith("...") and message.isprintable()


def test_pacing_reads_both_budgets_from_the_one_header_table() -> None:
    target = RoomTarget("https://h", "1", "token")
    pacing = Pacing()
    for limit in LIMIT_HEADERS:
        pacing.observe(target, {limit.remaining: "0", limit.reset: str(NOW + 10)}, NOW)
        assert pacing.delay_before_send(target, NOW) == 10.0
        pacing = Pacing()
    assert {limit.scope for limit in LIMIT_HEADERS} == {"token", "room"}


def test_backoff_uses_the_random_source_given() -> None:
    rng = random.Random(7)
    first = classify(Answer(500, {}, ""), now=NOW, attempt=0, policy=POLICY, rng=rng)
    assert first.retry_after is not None and 0 <= first.retry_after <= 1.0


def test_an_exception_is_its_classes_and_errno_never_its_text() -> None:
    banner = http.client.BadStatusLine("220 mail.example.com ESMTP secret-in-banner\r\n")
    aborted = urllib3.exceptions.ProtocolError("Connection aborted.", banner)
    assert exception_text(aborted) == "ProtocolError (BadStatusLine)"
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    try:
        connection = urllib3.connection.HTTPConnection("127.0.0.1")
        raise urllib3.exceptions.NewConnectionError(connection, "failed: secret") from refused
    except urllib3.exceptions.NewConnectionError as exc:
        text = exception_text(exc)
    assert text == "NewConnectionError (ConnectionRefusedError, errno 111 ECONNREFUSED)"
    assert exception_text(ValueError("secret")) == "ValueError"


def test_a_tls_failure_keeps_openssls_reason_code() -> None:
    failure = ssl.SSLCertVerificationError(1, "certificate verify failed: secret")
    failure.reason = "CERTIFICATE_VERIFY_FAILED"
    failure.verify_code = 18
    wrapped = urllib3.exceptions.SSLError(failure)
    assert exception_text(wrapped) == (
        "SSLError (SSLCertVerificationError, CERTIFICATE_VERIFY_FAILED, verify code 18)"
    )


def test_a_cycle_of_causes_ends() -> None:
    first, second = OSError("a"), OSError("b")
    first.__context__, second.__context__ = second, first
    assert exception_text(first) == "OSError"
