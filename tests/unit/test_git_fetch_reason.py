"""The reason a failed git call gives: git's own line, and for a remote reached
through ssh, ssh's line saying why rather than git's "Could not read from
remote repository.", which it says of every ssh failure.

The stderr texts are git 2.39's and OpenSSH 9.2's, as a fetch from a real
sshd on loopback wrote them (ssh ends its lines with CR LF, git with LF).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.reconcile.gitcommand import Call, _reason

# git's words after any failure of the program that carried the fetch (ssh).
ADVICE = (
    b"fatal: Could not read from remote repository.\n\n"
    b"Please make sure you have the correct access rights\n"
    b"and the repository exists.\n"
)
CHANGED_HOST_KEY = (
    b"@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
    b"@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n"
    b"@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
    b"IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\n"
    b"Someone could be eavesdropping on you right now (man-in-the-middle attack)!\r\n"
    b"It is also possible that a host key has just been changed.\r\n"
    b"The fingerprint for the ED25519 key sent by the remote host is\n"
    b"SHA256:S+kSQttsBDOXDP6e4NQzOkntx8hYwFIc1jvUZ5aS//Y.\r\n"
    b"Please contact your system administrator.\r\n"
    b"Add correct host key in /etc/syncd/known_hosts to get rid of this message.\r\n"
    b"Offending ED25519 key in /etc/syncd/known_hosts:1\r\n"
    b"  remove with:\r\n"
    b'  ssh-keygen -f "/etc/syncd/known_hosts" -R "[127.0.0.1]:41297"\r\n'
    b"Host key for [127.0.0.1]:41297 has changed and you have requested strict checking.\r\n"
    b"Host key verification failed.\r\n" + ADVICE
)
UNKNOWN_HOST = (
    b"No ED25519 host key is known for [127.0.0.1]:41297 and you have requested "
    b"strict checking.\r\nHost key verification failed.\r\n" + ADVICE
)
WRONG_KEY = b"root@127.0.0.1: Permission denied (publickey).\r\n" + ADVICE
REFUSED = b"ssh: connect to host 127.0.0.1 port 1: Connection refused\r\n" + ADVICE
UNRESOLVED = (
    b"ssh: Could not resolve hostname git.example.invalid: Name or service not known\r\n" + ADVICE
)
NO_REPOSITORY = b"fatal: '/srv/git/nope.git' does not appear to be a git repository\n" + ADVICE
NO_REF = b"fatal: couldn't find remote ref HEAD\nfatal: the remote end hung up unexpectedly\n"


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (
            CHANGED_HOST_KEY,
            "Host key verification failed (git: Could not read from remote repository)",
        ),
        (UNKNOWN_HOST, "Host key verification failed (git: Could not read from remote repository)"),
        (
            WRONG_KEY,
            "root@127.0.0.1: Permission denied (publickey) "
            "(git: Could not read from remote repository)",
        ),
        (
            REFUSED,
            "ssh: connect to host 127.0.0.1 port 1: Connection refused "
            "(git: Could not read from remote repository)",
        ),
        (
            UNRESOLVED,
            "ssh: Could not resolve hostname git.example.invalid: Name or service not "
            "known (git: Could not read from remote repository)",
        ),
        (
            NO_REPOSITORY,
            "'/srv/git/nope.git' does not appear to be a git repository "
            "(git: Could not read from remote repository)",
        ),
    ],
)
def test_an_ssh_failure_says_what_ssh_said(stderr: bytes, reason: str) -> None:
    assert _reason(stderr, 128) == reason


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (NO_REF, "the remote end hung up unexpectedly"),
        (b"error: cannot lock ref 'refs/x'\n", "cannot lock ref 'refs/x'"),
        (b"warning: something\nusage: git fetch\n", "warning: something"),
        (b"", "exit status 128"),
        # Nothing before it: git's own line, as it is.
        (ADVICE, "Could not read from remote repository."),
        (b"\r\n\n" + ADVICE, "Could not read from remote repository."),
    ],
)
def test_other_failures_keep_git_s_own_line(stderr: bytes, reason: str) -> None:
    assert _reason(stderr, 128) == reason


def test_only_the_line_before_is_taken_from_what_the_peer_sent() -> None:
    """What reaches stderr through ssh is the server's to write (a banner, its
    git's messages): one line of it, cut short, never more."""
    banner = b"".join(b"banner line %d with PRIVATE-LOOKING text\r\n" % n for n in range(50))
    long_line = b"fatal: " + b"x" * 10_000 + b"\n"
    reason = _reason(banner + long_line + ADVICE, 128)
    assert "banner" not in reason
    assert reason.endswith(" (git: Could not read from remote repository)")
    assert len(reason) < 400
    assert reason.startswith("x" * 100)


def test_control_characters_the_peer_sent_are_escaped_in_the_error() -> None:
    stderr = b"\x1b[31mremote\x1b[0m says no\x07\r\n" + ADVICE
    call = Call(("fetch", "origin"), {}, 5.0, cwd=Path("/"))
    error = call.failed(_reason(stderr, 128), 128)
    assert "\x1b" not in str(error) and "\x07" not in str(error)
    assert str(error) == (
        "git fetch failed: \\x1b[31mremote\\x1b[0m says no\\x07 "
        "(git: Could not read from remote repository)"
    )
