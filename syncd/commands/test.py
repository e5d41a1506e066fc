"""``syncd test``: each room's token checked against HipChat."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from syncd.commands.configdir import load_valid
from syncd.config import semantics
from syncd.config.reach import DEFAULT_REACH, Reach
from syncd.errors import EXIT_FAILED, EXIT_OK, UsageError


def test(
    config_dir: Path,
    *,
    uids: Sequence[str] = (),
    send: bool = False,
    allow_plaintext_tokens: bool = False,
    reach: Reach = DEFAULT_REACH,
    exclude: tuple[str, ...] = (),
) -> int:
    """Exit 0 when every room is OK, 1 when one is not."""
    from syncd.commands.roomtest import check_rooms
    from syncd.hipchat.client import HipChatClient

    options = semantics.Options(
        allow_plaintext_tokens=allow_plaintext_tokens,
        reach=reach,
        refuse_plaintext_tokens=True,
        exclude=exclude,
    )
    config = load_valid(config_dir, options)
    chosen = [i for i in config.integrations if not uids or i.uid in uids]
    missing = set(uids) - {i.uid for i in chosen}
    if missing:
        raise UsageError(f"no integration {', '.join(sorted(missing))}")
    failed = 0
    with HipChatClient(allow_link_local=reach.allow_link_local) as client:
        for check in check_rooms(chosen, client, send=send):
            print(check, flush=True)
            failed += not check.ok
    return EXIT_FAILED if failed else EXIT_OK
