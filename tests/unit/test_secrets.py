"""Token references resolve from env, files and systemd credentials; redaction."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from syncd.config.secrets import RedactingFilter, Redactor, SecretError, SecretRef, redact


def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOM_TOKEN", " env-token-value\n")
    assert SecretRef("env", "ROOM_TOKEN").resolve() == "env-token-value"
    monkeypatch.setenv("ROOM_TOKEN", "")
    with pytest.raises(SecretError, match="ROOM_TOKEN is not set or empty"):
        SecretRef("env", "ROOM_TOKEN").resolve()


def test_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("file-token-value\n")
    assert SecretRef("file", str(path)).resolve() == "file-token-value"
    with pytest.raises(SecretError, match=r"cannot read .*missing: No such file"):
        SecretRef("file", str(tmp_path / "missing")).resolve()
    path.write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        SecretRef("file", str(path)).resolve()


def test_credential_from_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hipchat-ops").write_text("credential-token-value")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert SecretRef("credential", "hipchat-ops").resolve() == "credential-token-value"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(SecretError, match="CREDENTIALS_DIRECTORY is not set"):
        SecretRef("credential", "hipchat-ops").resolve()


def test_a_ref_never_shows_a_literal_token() -> None:
    ref = SecretRef("plain", "literal-token-value")
    assert "literal-token-value" not in repr(ref) + str(ref) + ref.describe()
    public = ref.public()
    assert public.name.startswith("sha256:") and "literal" not in public.name
    assert public.public() == public
    assert SecretRef("env", "X").public() == SecretRef("env", "X")


def test_redact_longest_first_and_short_strings_left_alone() -> None:
    text = "abc tok-123 tok-123456 tok"
    assert redact(text, ["tok-123", "tok-123456", "tok"]) == "abc *** *** tok"


def test_redacting_filter_masks_messages_args_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = ["secret-room-token"]
    logger = logging.getLogger("syncd.test.redact")
    caplog.handler.addFilter(RedactingFilter(lambda: [Redactor.of(secrets)]))
    with caplog.at_level(logging.INFO, logger="syncd.test.redact"):
        logger.info("posting with %s", "secret-room-token")
        try:
            raise ValueError("bad token secret-room-token")
        except ValueError:
            logger.exception("failed")
    assert "secret-room-token" not in caplog.text
    assert caplog.text.count("***") >= 2


def test_tokens_that_overlap_in_a_text_are_masked_whole() -> None:
    """Each secret searched for in turn masked the first one found and left the
    rest of the other showing; a token inside another, or repeating itself, too."""
    first, second = "abcd-1234", "1234-wxyz"
    assert redact(f"x {first}-wxyz y", [first, second]) == "x *** y"
    assert redact(f"x zz-{first} y", ["zz-abcd", first]) == "x *** y"
    assert redact("x aaaaaa y", ["aaaa"]) == "x *** y"
    assert redact("x tok-123456 y", ["tok-123", "23456"]) == "x *** y"
    assert redact("tok-1tok-1", ["tok-1"]) == "******"
    assert redact("", ["tok-1"]) == "" and redact("tok", ["tok-1"]) == "tok"


def test_a_token_several_rooms_share_is_masked_until_the_last_lets_it_go() -> None:
    shared, own = "shared-token", "own-token"
    redactor = Redactor.of([shared, shared, own])
    fewer = redactor.changed([shared, own], [])
    assert fewer.redact(f"{shared} {own}") == f"*** {own}"
    none = fewer.changed([shared], [])
    assert none.redact(f"{shared} {own}") == f"{shared} {own}" and not none
    assert redactor.redact(f"{shared} {own}") == "*** ***", "a change made another redactor"
    assert shared not in repr(redactor) and shared not in str(redactor)


def test_a_redactor_changed_step_by_step_masks_what_one_built_at_once_does() -> None:
    """Tokens taken and let go at random, many beginning alike: the redactor kept
    from change to change masks what one built from the tokens held does."""
    rng = random.Random(7)
    pool = [f"tok{rng.choice('ab')}{rng.randrange(40)}" * rng.randint(1, 2) for _ in range(60)]
    held: list[str] = []
    redactor = Redactor()
    for _ in range(300):
        added = rng.sample(pool, rng.randint(0, 3))
        removed = rng.sample(held, min(len(held), rng.randint(0, 3)))
        for token in removed:
            held.remove(token)
        held += added
        redactor = redactor.changed(removed, added)
        text = " ".join(rng.sample(pool, 8))
        assert redactor.redact(text) == Redactor.of(held).redact(text)


def test_tokens_that_begin_alike_are_each_found_among_thousands() -> None:
    """Tokens of one issuer share their first characters ("ghp_"): each is still
    masked, a prefix alone is not, and letting one go keeps the others masked."""
    tokens = [f"ghp_{n:036d}" for n in range(20_000)] + ["ghp_short", "ghp_"]
    redactor = Redactor.of(tokens)
    text = f"a {tokens[7]} b ghp_ c ghp_shorter {tokens[19_999]}"
    assert redactor.redact(text) == "a *** b *** c ***er ***"
    fewer = redactor.changed([tokens[7], "ghp_"], [])
    assert fewer.redact(text) == f"a {tokens[7]} b ghp_ c ***er ***"


def test_redact_masks_as_a_redactor_does_and_reads_its_secrets_once() -> None:
    """``redact`` skips building a redactor for a text that holds no secret (each
    send's result passes through it): it must mask exactly what a redactor does,
    even when the secrets come as a generator, which can be read only once."""
    rng = random.Random(7)
    for _ in range(2_000):
        secrets = ["".join(rng.choices("ab-", k=rng.randint(1, 7))) for _ in range(3)]
        text = "".join(rng.choices("ab-x", k=rng.randint(0, 20)))
        expected = Redactor.of(secrets).redact(text)
        assert redact(text, secrets) == expected, (text, secrets)
        assert redact(text, (s for s in secrets)) == expected, (text, secrets)
    assert redact("sent", ["bench-token-1"]) == "sent"
    assert redact("token bench-token-1 refused", iter(["bench-token-1"])) == "token *** refused"
