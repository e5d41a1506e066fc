"""What the HTTP front takes as a body length."""

from __future__ import annotations

import pytest

from syncd.service.http import _content_length


@pytest.mark.parametrize(
    ("headers", "length"),
    [([], 0), (["12"], 12), ([" 12 "], 12), (["12", "12"], 12), (["0"], 0)],
)
def test_one_plain_number_is_the_length(headers: list[str], length: int) -> None:
    assert _content_length(headers) == length


@pytest.mark.parametrize(
    "headers",
    [["12", "13"], ["\xb2"], ["\u0663"], ["-1"], ["1e3"], [""], ["9" * 5000], ["0x10"]],
)
def test_anything_else_is_refused(headers: list[str]) -> None:
    assert _content_length(headers) is None
