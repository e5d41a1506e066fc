"""The test server enforces HipChat's rate limits, on a clock the test moves, and
syncd's own delivery paces on them instead of spending requests on refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from syncd.config.configset import load_config_set
from syncd.config.semantics import Options
from syncd.delivery.dispatch import DispatchConfig, Dispatcher
from syncd.events.ingest import Ingest
from syncd.events.validation import validate_events
from syncd.hipchat.client import HipChatClient
from syncd.hipchat.wire import RoomTarget, is_rate_limit
from syncd.registry import Registry
from syncd.store.sqlite import Outbox
from syncd.testing import HipChatServer
from syncd.testing.hipchat_contract import SERVER_LIMITS, SERVER_RATE_LIMIT_MESSAGE
from tests.support.clocks import Clock
from tests.support.configs import trace_config
from tests.support.daemons import TEST_REACH
from tests.support.events import numbered_events
from tests.support.waiting import wait_for

TOKEN = "shared-token-0001"
OTHER = "other-token-0002"
T0 = 1_700_000_000.0
LIMIT_HEADERS = (
    "X-Ratelimit-Limit",
    "X-Ratelimit-Remaining",
    "X-Ratelimit-Reset",
    "X-FloodControl-Limit",
    "X-FloodControl-Remaining",
    "X-FloodControl-Reset",
)


def rooms(count: int, token: str = TOKEN, first: int = 1) -> dict[str, str]:
    return {str(n): token for n in range(first, first + count)}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as opened:
        yield opened


def post(
    session: requests.Session,
    server: HipChatServer,
    room: str,
    *,
    token: str = TOKEN,
    body: object = None,
    query: str = "",
) -> requests.Response:
    return session.post(
        f"{server.url}/v2/room/{room}/notification{query}",
        json={"message": f"to {room}"} if body is None else body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def limits_of(response: requests.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in LIMIT_HEADERS}


def test_the_31st_message_in_a_minute_to_one_room_is_429_and_other_rooms_go_on(
    clock: Clock, session: requests.Session
) -> None:
    with HipChatServer({**rooms(2), "3": OTHER}, limits="hipchat", clock=clock) as server:
        answers = [post(session, server, "1") for _ in range(30)]
        assert [a.status_code for a in answers] == [204] * 30
        assert [a.headers["X-FloodControl-Remaining"] for a in answers[:3]] == ["29", "28", "27"]
        refused = post(session, server, "1")
        assert refused.status_code == 429
        assert "exceeded the rate limit" in refused.json()["error"]["message"]
        assert refused.headers["Retry-After"] == "60"
        assert limits_of(refused) == {
            "X-Ratelimit-Limit": "500",
            "X-Ratelimit-Remaining": "469",  # a refused message is still a request
            "X-Ratelimit-Reset": str(int(T0 + 300)),
            "X-FloodControl-Limit": "30",
            "X-FloodControl-Remaining": "0",
            "X-FloodControl-Reset": str(int(T0 + 60)),
        }
        same_token = post(session, server, "2")
        assert same_token.status_code == 204
        assert same_token.headers["X-FloodControl-Remaining"] == "29"
        assert same_token.headers["X-Ratelimit-Remaining"] == "468"
        assert post(session, server, "3", token=OTHER).headers["X-Ratelimit-Remaining"] == "499"
        assert len(server.messages_for("1")) == 30


def test_the_rooms_minute_renews_on_the_servers_clock(
    clock: Clock, session: requests.Session
) -> None:
    with HipChatServer(rooms(1), limits="hipchat", clock=clock) as server:
        for _ in range(30):
            post(session, server, "1")
        clock.advance(59.5)
        late = post(session, server, "1")
        assert (late.status_code, late.headers["Retry-After"]) == (429, "1")
        clock.advance(0.5)
        renewed = post(session, server, "1")
        assert renewed.status_code == 204
        assert renewed.headers["X-FloodControl-Remaining"] == "29"
        assert renewed.headers["X-FloodControl-Reset"] == str(int(T0 + 120))


def test_the_501st_request_of_a_token_in_5_minutes_is_429_until_the_window_ends(
    clock: Clock, session: requests.Session
) -> None:
    with HipChatServer({**rooms(21), "99": OTHER}, limits="hipchat", clock=clock) as server:
        answers = [post(session, server, str(1 + n % 20)) for n in range(500)]
        assert {a.status_code for a in answers} == {204}
        assert answers[-1].headers["X-Ratelimit-Remaining"] == "0"
        refused = post(session, server, "21")
        assert (refused.status_code, refused.headers["Retry-After"]) == (429, "300")
        assert refused.headers["X-Ratelimit-Remaining"] == "0"
        assert refused.headers["X-FloodControl-Remaining"] == "30", "the room spent nothing"
        assert post(session, server, "99", token=OTHER).status_code == 204
        clock.advance(299)
        assert post(session, server, "21").headers["Retry-After"] == "1"
        clock.advance(1)
        renewed = post(session, server, "21")
        assert (renewed.status_code, renewed.headers["X-Ratelimit-Remaining"]) == (204, "499")
        assert len(server.messages) == 502


def test_hipchat_server_mode_answers_the_101st_request_with_its_403(
    clock: Clock, session: requests.Session
) -> None:
    with HipChatServer(rooms(4), limits="server", clock=clock) as server:
        assert server.limits == SERVER_LIMITS
        answers = [post(session, server, str(1 + n % 4)) for n in range(100)]
        assert {a.status_code for a in answers} == {204}
        assert answers[0].headers["X-Ratelimit-Limit"] == "100"
        refused = post(session, server, "1")
        assert refused.status_code == 403
        assert refused.json() == {
            "error": {"code": 403, "type": "Forbidden", "message": SERVER_RATE_LIMIT_MESSAGE}
        }
        assert "Retry-After" not in refused.headers
        assert refused.headers["X-Ratelimit-Reset"] == str(int(T0 + 300))
        clock.advance(300)
        assert post(session, server, "1").status_code == 204


def test_hipchat_server_mode_also_refuses_a_flooded_room_with_its_403(
    clock: Clock, session: requests.Session
) -> None:
    with HipChatServer(rooms(1), limits="server", clock=clock) as server:
        for _ in range(30):
            post(session, server, "1")
        refused = post(session, server, "1")
        assert refused.status_code == 403 and is_rate_limit(403, refused.text)
        assert refused.headers["X-FloodControl-Remaining"] == "0"


def test_syncds_client_waits_for_the_reset_hipchat_server_names(clock: Clock) -> None:
    with (
        HipChatServer(rooms(1), limits="server", clock=clock) as server,
        HipChatClient(clock=clock) as client,
    ):
        target = RoomTarget(server.url, "1", TOKEN)
        for _ in range(30):
            assert client.auth_test(target).ok  # requests against the token, no message
        clock.advance(10)
        result = client.auth_test(target)
        assert result.ok
        for _ in range(69):
            client.auth_test(target)
        assert client.delay_before_send(target) == pytest.approx(290.0)
        refused = client.auth_test(target)
        assert (refused.outcome, refused.status, refused.rate_limited) == ("retry", 403, True)
        assert refused.retry_after == pytest.approx(290.0)


def test_every_answer_past_the_token_check_carries_both_budgets(
    clock: Clock, session: requests.Session
) -> None:
    with HipChatServer(rooms(1), limits="hipchat", clock=clock) as server:
        bad = post(session, server, "1", body={"message": ""})
        assert bad.status_code == 400
        assert bad.headers["X-Ratelimit-Remaining"] == "499"
        assert bad.headers["X-FloodControl-Remaining"] == "30", "nothing was posted"
        checked = post(session, server, "1", query="?auth_test=true")
        assert checked.status_code == 202
        assert limits_of(checked)["X-FloodControl-Remaining"] == "30"
        assert post(session, server, "1", token="wrong").status_code == 401
        assert limits_of(post(session, server, "1"))["X-Ratelimit-Remaining"] == "497"


def test_none_never_limits_nor_reports_limits(session: requests.Session) -> None:
    with HipChatServer(rooms(1), limits="none") as server:
        assert server.limits is None
        answers = [post(session, server, "1") for _ in range(501)]
        assert {a.status_code for a in answers} == {204}
        assert not any(name in answers[-1].headers for name in LIMIT_HEADERS)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="one of hipchat, server, none"):
        HipChatServer(rooms(1), limits="cloud")  # type: ignore[arg-type]


@dataclass
class Delivery:
    server: HipChatServer
    outbox: Outbox
    ingest: Ingest
    dispatcher: Dispatcher
    clock: Clock

    def refusals(self) -> int:
        return sum(1 for a in self.server.attempts if a.status == 429)

    def paced(self) -> bool:
        """The room's next notification waits for a time still to come, with no send
        in flight: a claimed head is also due later (when its lease runs out), and a
        clock moved while its answer is read would move the pacing with it."""
        due = self.outbox.next_due()
        in_flight = self.outbox.items("inflight", limit=1)
        return not in_flight and due is not None and due > self.clock()


@pytest.fixture
def delivery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Delivery]:
    """syncd's delivery in this process against the server in ``hipchat`` mode, every
    part on one clock that moves only when the test moves it."""
    clock = Clock(time.time())
    monkeypatch.setenv("HIPCHAT_TOKEN_1", TOKEN)
    server = HipChatServer(rooms(1), limits="hipchat", clock=clock).start()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "a.yaml").write_text(trace_config(server.url, ["1"]))
    config = load_config_set([tmp_path / "config"], Options(reach=TEST_REACH))
    registry = Registry()
    assert registry.apply(config, "test").ok
    outbox = Outbox(tmp_path / "outbox.db", clock=clock)
    client = HipChatClient(clock=clock, backoff_base=0.01, backoff_cap=0.05)
    dispatcher = Dispatcher(
        outbox, registry, client, DispatchConfig(workers=4, idle_poll=0.02), clock=clock
    )
    ingest = Ingest(outbox, registry, clock=clock, on_enqueued=dispatcher.wake)
    dispatcher.start()
    yield Delivery(server, outbox, ingest, dispatcher, clock)
    dispatcher.stop(timeout=5)
    client.close()
    outbox.close()
    server.close()


def submit(delivery: Delivery, first: int, count: int) -> None:
    valid, problems = validate_events(numbered_events(first, count))
    assert problems == []
    assert delivery.ingest.submit(valid).notifications == count


def test_syncd_sends_60_notifications_to_one_room_in_two_minutes_without_a_429(
    delivery: Delivery,
) -> None:
    submit(delivery, 0, 60)
    delivery.server.wait_for_messages(30, timeout=10)
    wait_for(delivery.paced, what="the 31st notification paced to the next minute")
    assert len(delivery.server.messages) == 30
    delivery.clock.advance(61)  # the reset comes in whole seconds, rounded up
    delivery.server.wait_for_messages(60, timeout=10)
    assert delivery.refusals() == 0
    assert len(delivery.server.attempts) == 60


def test_a_minute_another_sender_spent_costs_syncd_one_429_not_a_burst(
    delivery: Delivery, session: requests.Session
) -> None:
    for _ in range(30):
        assert post(session, delivery.server, "1").status_code == 204
    submit(delivery, 0, 60)
    wait_for(lambda: delivery.refusals() >= 1 and delivery.paced(), what="the first 429")
    delivery.clock.advance(61)
    delivery.server.wait_for_messages(60, timeout=10)
    wait_for(delivery.paced, what="the next 30 paced to the next minute")
    delivery.clock.advance(61)
    delivery.server.wait_for_messages(90, timeout=10)
    assert delivery.refusals() == 1
