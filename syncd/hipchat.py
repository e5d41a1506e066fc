"""The HipChat API v2 client: sessions and sending.

What a request is and what an answer means are pure functions in
``hipchat_api``; the budget between requests is ``pacing``'s. This module
owns only the I/O: one ``requests.Session`` per thread, and turning every
failure into a :class:`DeliveryResult` that the dispatcher can act on, never
an exception. Tokens travel only in the ``Authorization`` header, and every
text this module produces (results, log lines) is redacted first, because
``requests`` and ``http.client`` put URLs and header values into their errors.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import requests
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict

from syncd import __version__
from syncd.deadlines import Deadlines
from syncd.hipchat_api import (
    MAX_ANSWER_BYTES,
    Answer,
    DeliveryResult,
    RandomSource,
    RetryPolicy,
    RoomTarget,
    backoff,
    classify,
    notification_body,
)
from syncd.message import Message
from syncd.pacing import Pacing
from syncd.secrets import redact

log = logging.getLogger(__name__)

Clock = Callable[[], float]

DEFAULT_TIMEOUT = (3.05, 10.0)
DEFAULT_SEND_TIMEOUT = 30.0
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_CAP = 300.0
DEFAULT_MAX_SERVER_WAIT = 3600.0
MAX_REASON = 500
USER_AGENT = f"syncd/{__version__}"

# What may stand in an HTTP header value; anything else would make requests or
# http.client raise an error that quotes the header, token included.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


class HipChatClient:
    """Posts room notifications; one ``requests.Session`` per calling thread.

    Sessions keep connections alive but are not safe to share between threads,
    hence one per worker. :meth:`close` closes them all.
    """

    def __init__(
        self,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        max_server_wait: float = DEFAULT_MAX_SERVER_WAIT,
        rng: RandomSource | None = None,
        clock: Clock = time.time,
        pacing: Pacing | None = None,
    ) -> None:
        self.timeout = timeout
        self.send_timeout = send_timeout
        self._deadlines = Deadlines()
        self.policy = RetryPolicy(backoff_base, backoff_cap, max_server_wait)
        self.pacing = pacing if pacing is not None else Pacing(max_delay=max_server_wait)
        self._rng: RandomSource = rng if rng is not None else random.Random()
        self._clock = clock
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._verify: str | bool = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self._closed = False
        self._proxy_cache: dict[str, dict[str, str]] = {}
        self._urls: dict[str, str] = {}

    def __enter__(self) -> HipChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._sessions_lock:
            self._closed = True
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._deadlines.close()

    def _session(self) -> requests.Session:
        """This thread's session.

        It does not read the environment (``trust_env``): requests would look up
        proxies, CA bundle and .netrc again on every request, a tenth of a send's
        CPU, and a .netrc entry would replace the room's bearer token. Proxies
        and the CA bundle are read from the environment once instead. Requests
        are prepared by :meth:`_post` and handed to ``Session.send``: merging
        session settings into each request cost another tenth, and a HipChat
        server has no cookies for us to keep.
        """
        if self._closed:
            raise RuntimeError("HipChatClient is closed")
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = self._verify
            session.headers["User-Agent"] = USER_AGENT
            adapter = self._deadlines.adapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            with self._sessions_lock:
                self._sessions.append(session)
            self._local.session = session
        return session

    def _proxies(self, url: str) -> dict[str, str]:
        """The environment's proxies for ``url``'s host, read once per host."""
        base = url.split("/", 3)[2] if "://" in url else url
        proxies = self._proxy_cache.get(base)
        if proxies is None:
            proxies = requests.utils.get_environ_proxies(url)
            self._proxy_cache[base] = proxies
        return proxies

    def delay_before_send(self, target: RoomTarget, now: float | None = None) -> float:
        """Seconds a dispatcher should wait before sending to ``target``."""
        return self.pacing.delay_before_send(target, self._clock() if now is None else now)

    def send(self, target: RoomTarget, message: Message, *, attempt: int = 0) -> DeliveryResult:
        """Post ``message`` to the room; ``attempt`` (0 first) scales the backoff."""
        return self._post(target, notification_body(message), attempt=attempt, auth_test=False)

    def auth_test(self, target: RoomTarget) -> DeliveryResult:
        """Ask the server whether the token may notify the room, without posting anything.

        A valid token answers 202 (``delivered``); no message reaches the room.
        """
        body = {"message": "syncd auth test", "message_format": "text"}
        return self._post(target, body, attempt=0, auth_test=True)

    def _post(
        self, target: RoomTarget, body: dict[str, Any], *, attempt: int, auth_test: bool
    ) -> DeliveryResult:
        secrets = (target.token,)
        if not _TOKEN_CHARS.fullmatch(target.token):
            return self._finish(
                target,
                DeliveryResult(
                    "permanent",
                    None,
                    "the token holds characters that cannot be sent in an HTTP header",
                ),
                secrets,
            )
        now = self._clock()
        self.pacing.note_send(target, now)
        with self._deadlines.bounded(self.send_timeout) as watch:
            result = self._exchange(target, body, attempt, auth_test)
            if watch.expired and result.status is None:
                wait = backoff(
                    attempt, self.policy.backoff_base, self.policy.backoff_cap, self._rng
                )
                result = DeliveryResult(
                    "retry",
                    None,
                    f"no complete answer within {self.send_timeout:g} s",
                    retry_after=wait,
                )
        return self._finish(target, result, secrets)

    def _exchange(
        self, target: RoomTarget, body: dict[str, Any], attempt: int, auth_test: bool
    ) -> DeliveryResult:
        try:
            session = self._session()
            request = self._request(session, target, body, auth_test)
            response = session.send(
                request,
                timeout=self.timeout,
                allow_redirects=False,
                proxies=self._proxies(target.url),
                verify=target.ca_file or self._verify,
                stream=True,
                cert=None,
            )
        except requests.RequestException as exc:
            result = self._from_exception(exc, attempt)
        except (ValueError, OSError) as exc:
            result = DeliveryResult("permanent", None, f"request failed: {type(exc).__name__}")
        else:
            with response:
                result = self._from_response(target, response, attempt, auth_test)
        return result

    def _request(
        self,
        session: requests.Session,
        target: RoomTarget,
        body: dict[str, Any],
        auth_test: bool,
    ) -> requests.PreparedRequest:
        """The POST, prepared without ``PreparedRequest.prepare``: that re-parses the
        URL and re-checks every header on each send, a tenth of a send's CPU. The URL is
        prepared once per room by requests itself; the token was checked by ``_post``."""
        url = self._urls.get(target.url)
        if url is None:
            prepared = requests.PreparedRequest()
            prepared.prepare_url(target.url, None)
            url = self._urls[target.url] = str(prepared.url)
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        request = requests.PreparedRequest()
        request.method = "POST"
        request.url = url + ("?auth_test=true" if auth_test else "")
        headers = {k: v for k, v in session.headers.items() if isinstance(v, str)}
        request.headers = CaseInsensitiveDict(
            {
                **headers,
                "Authorization": f"Bearer {target.token}",
                "Content-Type": "application/json",
                "Content-Length": str(len(data)),
            }
        )
        request.body = data
        request.prepare_cookies(None)
        request.hooks = default_hooks()
        return request

    def _finish(
        self, target: RoomTarget, result: DeliveryResult, secrets: tuple[str, ...]
    ) -> DeliveryResult:
        reason = _clip(_scrub(result.reason, secrets))
        if reason != result.reason:
            result = replace(result, reason=reason)
        # The caller reports what matters (the dispatcher logs dead letters); a
        # command that runs without logging set up must not get a stray stderr line.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s (%s)", _scrub(str(target), secrets), result.outcome, result.reason)
        return result

    def _from_exception(self, exc: requests.RequestException, attempt: int) -> DeliveryResult:
        name = type(exc).__name__
        retryable = isinstance(
            exc,
            requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError,
        )
        if isinstance(exc, requests.exceptions.InvalidHeader):
            return DeliveryResult("permanent", None, f"request failed: {name}")
        detail = f"{name}: {exc}"
        if retryable:
            return DeliveryResult("retry", None, detail, retry_after=self._backoff(attempt))
        return DeliveryResult("permanent", None, detail)

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.policy.backoff_base, self.policy.backoff_cap, self._rng)

    def _from_response(
        self, target: RoomTarget, response: requests.Response, attempt: int, auth_test: bool
    ) -> DeliveryResult:
        now = self._clock()
        self.pacing.observe(target, response.headers, now)
        answer = Answer(response.status_code, response.headers, _read_capped(response))
        result = classify(
            answer, now=now, attempt=attempt, policy=self.policy, rng=self._rng, auth_test=auth_test
        )
        if result.rate_limited and result.retry_after is not None:
            self.pacing.block(target, now + result.retry_after)
        return result


def _read_capped(response: requests.Response) -> str:
    """At most ``MAX_ANSWER_BYTES`` of the body, read as a stream: a server may send
    gigabytes, and only HipChat's small error document is ever used."""
    kept = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=16 * 1024):
            kept += chunk
            if len(kept) >= MAX_ANSWER_BYTES:
                break
    except (requests.RequestException, OSError):
        pass  # the status has arrived; a cut or broken body changes nothing about it
    return bytes(kept[:MAX_ANSWER_BYTES]).decode("utf-8", "replace")


def _clip(text: str) -> str:
    """At most ``MAX_REASON`` characters; cut only after redaction, or half a token would show."""
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Redact the tokens, also as ``repr`` would quote them inside an error message."""
    variants = set(secrets)
    for secret in secrets:
        variants.add(repr(secret)[1:-1])
        variants.add(quote(secret, safe=""))
    return redact(text, variants)


@contextmanager
def _client(timeout: tuple[float, float]) -> Iterator[HipChatClient]:
    client = HipChatClient(timeout=timeout)
    try:
        yield client
    finally:
        client.close()


def auth_test(
    endpoint: str, room_id: str, token: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
) -> DeliveryResult:
    """Check one room's token against its server (``syncd test``); 202 means valid."""
    with _client(timeout) as client:
        return client.auth_test(RoomTarget(endpoint, room_id, token))
