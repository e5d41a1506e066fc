"""Action rules per second: RE2 (what syncd runs) against Python's re (what it ran).

Judges events against the shipped example's integrations the way ingest does
(``routing.judge``), once with the RE2 patterns syncd compiles and once with
the same patterns compiled by Python's ``re``, and prints events/s for both
and their ratio. Then the hostile case: ``^(a+)+$`` against ``a`` * n + ``!``,
whose time doubles per character under ``re`` and stays flat under RE2 (``re``
is stopped at 20 characters, where it already takes seconds).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from host import machine  # noqa: E402

from syncd.config.configset import load_config_set  # noqa: E402
from syncd.config.patterns import compile_pattern  # noqa: E402
from syncd.config.reach import Reach  # noqa: E402
from syncd.config.semantics import Options  # noqa: E402
from syncd.events import rules  # noqa: E402
from syncd.events.routing import judge  # noqa: E402

ATTRIBUTES = [
    {"environment": "production", "team": "payments", "datacenter": "nyc", "version": "1.4.2"},
    {"environment": "staging", "team": "search", "datacenter": "sfo", "version": "1.4.3"},
    {"environment": "production", "team": "core", "hostname": "web-17"},
]


def events(count: int) -> list[dict[str, object]]:
    return [
        {"project": "checkout", "fingerprint": f"fp{n}", "attributes": ATTRIBUTES[n % 3]}
        for n in range(count)
    ]


def rate(run: Callable[[], None], count: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)


def python_re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def hostile(engine: Callable[[str], object], n: int) -> float:
    pattern = engine("^(a+)+$")
    start = time.perf_counter()
    pattern.search("a" * n + "!")  # type: ignore[attr-defined]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # The tour's endpoint is plain http on loopback, allowed only when said so.
    config = load_config_set([ROOT / "examples"], Options(reach=Reach(allow_http=True)))
    integrations = list(config.integrations)
    batch = events(args.events)

    def judge_all() -> None:
        for event in batch:
            judge(event, integrations)

    print(f"machine: {machine()}")
    print(
        f"{len(integrations)} integrations of the example, {args.events} events, "
        f"median of {args.repeat}"
    )
    with_re2 = rate(judge_all, args.events, args.repeat)
    with mock.patch.object(rules, "compile_pattern", python_re):
        with_re = rate(judge_all, args.events, args.repeat)
    print(f"RE2 (syncd):      {with_re2:12,.0f} events/s")
    print(f"Python re (peer): {with_re:12,.0f} events/s")
    print(f"ratio RE2 / re:   {with_re2 / with_re:.2f}x")
    print("^(a+)+$ against 'a' * n + '!':")
    for n in (10, 15, 20, 40, 1000):
        slow = f"{hostile(python_re, n) * 1e3:10.2f} ms" if n <= 20 else "   (hours)"
        print(f"  n={n:5}: RE2 {hostile(compile_pattern, n) * 1e6:8.1f} us   re {slow}")


if __name__ == "__main__":
    main()
