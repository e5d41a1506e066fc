"""The daemon's limit on open files: the soft one raised to the hard one at start.

systemd starts a service with a soft limit of 1,024 (kept low for programs
that wait with select(), which cannot watch a descriptor past 1,023) and a
hard limit far above it, and its manual asks a program that waits otherwise
to raise the soft limit itself. The daemon holds a connection per send in
flight (up to ``--workers``, 1,024 by default) beside its API's clients, its
store and its watches, and waits on all of them with epoll or poll: under the
soft limit, sends at full concurrency would fail to connect, and the HTTP
front would shrink its connection cap to what was left.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# The most asked for: Linux's default bound on any limit (nr_open), far past
# what the daemon's workers and connections take. A container's hard limit may
# be "infinity" (a billion), and the children the daemon starts (git, ssh)
# inherit the soft limit: a program that closes every descriptor up to its
# limit as it starts would spend minutes on it.
MOST = 1 << 20


def target_limit(soft: int, hard: int) -> int | None:
    """The soft limit to ask for, or None when there is nothing to raise."""
    if soft == resource.RLIM_INFINITY:
        return None
    wanted = MOST if hard == resource.RLIM_INFINITY else min(hard, MOST)
    return wanted if wanted > soft else None


def raise_open_files() -> None:
    """Raise the soft limit to the hard one (at most ``MOST``), saying so; where it
    cannot, the HTTP front caps its connections by what the limit leaves, and
    says that."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target_limit(soft, hard)
    if wanted is None:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the open files limit from %d to %d: %s", soft, wanted, exc)
        return
    log.info("open files: soft limit raised from %d to %d", soft, wanted)
