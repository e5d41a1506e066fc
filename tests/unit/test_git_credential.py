"""The credential helper git asks for the token: it answers only for the remote's
own host, reads the token where it is kept, and never echoes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.reconcile import gitcredential

TOKEN = "tok-0123456789"


def environ(token_file: Path) -> dict[str, str]:
    return gitcredential.environment(token_file, "deploy", "https", "git.example.com:8443")


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    return path


def test_the_remote_s_host_gets_the_username_and_token(token_file: Path) -> None:
    request = "protocol=https\nhost=git.example.com:8443\npath=acme/config\n"
    answer = gitcredential.answer(request, environ(token_file))
    assert answer == f"username=deploy\npassword={TOKEN}\n"


@pytest.mark.parametrize(
    "request_text",
    [
        "protocol=https\nhost=evil.example.com\n",  # a redirect to another host
        "protocol=http\nhost=git.example.com:8443\n",  # a downgrade
        "protocol=https\nhost=git.example.com\n",  # another port
        "",
    ],
)
def test_any_other_host_gets_nothing(token_file: Path, request_text: str) -> None:
    assert gitcredential.answer(request_text, environ(token_file)) == ""


def test_the_environment_names_the_file_never_the_token(token_file: Path) -> None:
    assert TOKEN not in repr(environ(token_file))
    assert TOKEN not in gitcredential.helper_command()


@pytest.mark.parametrize("content", ["", "\n\n", "a\x1bb"])
def test_an_empty_or_odd_token_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(ValueError):
        gitcredential.read_token(path)


def test_store_and_erase_keep_nothing(token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("store", "erase"):
        assert gitcredential.main(["helper", action], environ(token_file)) == 0
    assert capsys.readouterr().out == ""


def test_an_unreadable_token_file_is_said_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("protocol=https\nhost=git.example.com:8443\n"))
    assert gitcredential.main(["helper", "get"], environ(tmp_path / "missing")) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert "cannot read --git-token-file" in out.err
