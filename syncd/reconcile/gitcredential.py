"""The credential helper git is given for a remote's token (``--git-token-file``).

git asks a credential helper for a username and password when an https remote
answers 401; the helper reads them where git cannot show them. The token is
never in the URL, git's arguments or its environment: git is told the path of
the token file (``SYNCD_GIT_TOKEN_FILE``), and this program, which git runs
as ``python -I -m syncd.reconcile.gitcredential get``, reads it at each ask,
so a token rotated in place (systemd's ``LoadCredential=``) is used at the
next fetch. It answers only for the remote's own protocol and host: a
redirect to another host gets no token. It stores and erases nothing.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

TOKEN_FILE = "SYNCD_GIT_TOKEN_FILE"
USERNAME = "SYNCD_GIT_USERNAME"
# protocol://host[:port]: the remote the token is for.
TARGET = "SYNCD_GIT_CREDENTIAL_TARGET"


def helper_command() -> str:
    """The ``credential.helper`` value that runs this program (``!`` makes git run
    it with the shell; the interpreter is this one, isolated from the working
    directory and user site)."""
    return "!" + shlex.join([sys.executable, "-I", "-m", __name__])


def environment(token_file: Path, username: str, protocol: str, host: str) -> dict[str, str]:
    """What git passes on to the helper: where the token is, never the token."""
    return {
        TOKEN_FILE: str(token_file),
        USERNAME: username,
        TARGET: f"{protocol}://{host}",
    }


def answer(request: str, environ: Mapping[str, str]) -> str:
    """The helper's reply to git's ``get`` request (``key=value`` lines): the
    username and token when git asks for the remote's own protocol and host,
    nothing otherwise. Raises OSError or ValueError when the token file cannot be
    read or is empty."""
    fields = dict(line.partition("=")[::2] for line in request.splitlines() if "=" in line)
    asked = f"{fields.get('protocol', '')}://{fields.get('host', '')}"
    if asked != environ.get(TARGET):
        return ""
    token = read_token(Path(environ[TOKEN_FILE]))
    return f"username={environ.get(USERNAME) or 'git'}\npassword={token}\n"


def read_token(path: Path) -> str:
    """The token: the file's first line, without surrounding blanks."""
    lines = path.read_text(encoding="utf-8").strip().splitlines()
    if not lines or not lines[0].strip():
        raise ValueError("it is empty")
    token = lines[0].strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
        raise ValueError("it holds control characters")
    return token


def main(argv: list[str], environ: Mapping[str, str]) -> int:
    if argv[1:] != ["get"] or TOKEN_FILE not in environ:
        return 0  # store, erase: nothing is kept
    try:
        reply = answer(sys.stdin.read(), environ)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(
            f"syncd: cannot read --git-token-file {environ[TOKEN_FILE]}: {reason}", file=sys.stderr
        )
        return 1
    sys.stdout.write(reply)
    return 0


if __name__ == "__main__":
    import os

    sys.exit(main(sys.argv, os.environ))
