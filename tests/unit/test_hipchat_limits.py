"""The test server's rate limits as pure counting: budgets, fixed windows, headers,
refusals, on a clock the test passes in."""

from __future__ import annotations

import json

import pytest

from syncd.hipchat.wire import is_rate_limit
from syncd.testing.hipchat_contract import (
    FLOOD_HEADERS,
    HIPCHAT_LIMITS,
    RATE_LIMIT_MODES,
    SERVER_LIMITS,
    Limits,
    Spent,
    Window,
    limit_headers,
    limits_for,
    refusal,
    spend,
)

T0 = 1_700_000_000.25


def spend_n(count: int, now: float, budget: int, length: float) -> list[Spent]:
    window: Window | None = None
    spent = []
    for _ in range(count):
        judged = spend(window, now, budget, length)
        window = judged.window
        spent.append(judged)
    return spent


def test_the_31st_message_in_a_window_is_refused_and_not_counted() -> None:
    judged = spend_n(31, T0, 30, 60.0)
    assert all(s.allowed for s in judged[:30])
    assert [s.remaining for s in judged[:3]] == [29, 28, 27]
    last = judged[30]
    assert (last.allowed, last.remaining, last.window.used) == (False, 0, 30)
    assert last.window.ends == T0 + 60.0, "a refused request does not push the reset"


def test_the_window_is_fixed_from_its_first_request_and_renews_whole() -> None:
    window = spend_n(30, T0, 30, 60.0)[-1].window
    later = spend(window, T0 + 59.9, 30, 60.0)
    assert not later.allowed and later.window.ends == T0 + 60.0
    renewed = spend(window, T0 + 60.0, 30, 60.0)
    assert (renewed.allowed, renewed.remaining) == (True, 29)
    assert renewed.window == Window(1, T0 + 120.0)


def test_looking_counts_nothing() -> None:
    window = spend(None, T0, 30, 60.0).window
    looked = spend(window, T0 + 1, 30, 60.0, count=False)
    assert (looked.allowed, looked.remaining, looked.window) == (True, 29, window)
    fresh = spend(None, T0, 30, 60.0, count=False)
    assert (fresh.remaining, fresh.window.used) == (30, 0)


def test_headers_give_the_budget_after_the_request_and_the_reset_in_unix_seconds() -> None:
    spent = spend(None, T0, 30, 60.0)
    assert limit_headers(FLOOD_HEADERS, spent) == (
        ("X-FloodControl-Limit", "30"),
        ("X-FloodControl-Remaining", "29"),
        ("X-FloodControl-Reset", str(1_700_000_061)),
    )


def test_hipchat_refuses_with_429_and_a_retry_after_of_at_least_a_second() -> None:
    spent = spend_n(31, T0, 30, 60.0)[-1]
    code, body, extra = refusal(HIPCHAT_LIMITS, spent, T0 + 10.5)
    assert (code, extra) == (429, (("Retry-After", "50"),))
    assert json.loads(body)["error"]["code"] == 429
    assert refusal(HIPCHAT_LIMITS, spent, T0 + 59.99)[2] == (("Retry-After", "1"),)


def test_hipchat_server_refuses_with_its_403_body_and_syncd_reads_it_as_a_rate_limit() -> None:
    spent = spend_n(101, T0, 100, 300.0)[-1]
    code, body, extra = refusal(SERVER_LIMITS, spent, T0)
    assert (code, extra) == (403, ())
    assert json.loads(body) == {
        "error": {
            "code": 403,
            "type": "Forbidden",
            "message": "You have exceeded the rate limit. "
            "See https://www.hipchat.com/docs/api/rate_limiting",
        }
    }
    assert is_rate_limit(code, body)


def test_modes() -> None:
    assert [limits_for(m) for m in RATE_LIMIT_MODES] == [HIPCHAT_LIMITS, SERVER_LIMITS, None]
    assert (HIPCHAT_LIMITS.rate, HIPCHAT_LIMITS.rate_window) == (500, 300.0)
    assert (HIPCHAT_LIMITS.flood, HIPCHAT_LIMITS.flood_window) == (30, 60.0)
    assert (SERVER_LIMITS.rate, SERVER_LIMITS.flood) == (100, 30)
    with pytest.raises(ValueError, match="hipchat, server, none, not 'cloud'"):
        limits_for("cloud")


def test_the_steady_rate_is_each_tokens_budget_or_its_rooms_whichever_is_less() -> None:
    assert HIPCHAT_LIMITS.steady_rate([1] * 1000) == pytest.approx(500.0)
    assert HIPCHAT_LIMITS.steady_rate([1]) == pytest.approx(0.5)
    assert HIPCHAT_LIMITS.steady_rate([10]) == pytest.approx(500 / 300)
    assert SERVER_LIMITS.steady_rate([1] * 3) == pytest.approx(1.0)
    assert Limits(rate=10, flood=5).steady_rate([1, 4]) == pytest.approx(10 / 300 + 10 / 300)
