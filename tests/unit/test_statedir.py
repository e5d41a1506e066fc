"""Where a state dir cannot be used, said before the daemon starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.errors import UsageError
from syncd.service.statedir import StateDir


def test_a_state_dir_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=r"--state-dir .* is not a directory"):
        StateDir(tmp_path / "file" / "state").acquire()


def test_a_state_dir_that_does_not_exist_yet_is_fine(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "new" / "state")
    state.acquire()
    state.release()
    assert (tmp_path / "new" / "state").is_dir()
